//! The two ways the bench talks MCP: Streamable HTTP (a keep-alive connection pool, one request
//! per call) and newline-delimited JSON-RPC on a child's stdio (calls pipelined by id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

pub const PROTOCOL_VERSION: &str = "2025-11-25";
const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

/// What became of one `tools/call`.
pub enum Outcome {
    Ok,
    /// Transport failure, timeout, HTTP status, JSON-RPC error, missing result.
    Error(String),
    /// An answer that is not the answer to this call: wrong id, or wrong echoed text.
    Mismatch(String),
}

fn initialize_request(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"bench","version":"1"}}}}}}"#
    )
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// `tools/call echo` with the unique message `m-<id>`; a 2026-07-28 one carries the
/// per-request envelope in `_meta`.
fn echo_request(id: u64, modern: bool) -> String {
    if modern {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m-{id}"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"{MODERN_VERSION}","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
        )
    } else {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m-{id}"}}}}}}"#
        )
    }
}

/// The stateless revision: no `initialize`, no session.
const MODERN_VERSION: &str = "2026-07-28";

/// Checks an answer whose id already matched: a result echoing exactly `m-<id>`.
fn check_echo(v: &Value, id: u64) -> Outcome {
    if let Some(err) = v.get("error") {
        return Outcome::Error(format!("id {id}: JSON-RPC error {err}"));
    }
    let Some(result) = v.get("result") else {
        return Outcome::Error(format!("id {id}: neither result nor error: {v}"));
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Outcome::Error(format!("id {id}: tool error {result}"));
    }
    let expected = format!("m-{id}");
    match result.pointer("/content/0/text").and_then(Value::as_str) {
        Some(text) if text == expected => Outcome::Ok,
        Some(text) => Outcome::Mismatch(format!("id {id}: echoed {text:?}, expected {expected:?}")),
        None => Outcome::Mismatch(format!("id {id}: no text content in {result}")),
    }
}

fn id_of(v: &Value) -> Option<u64> {
    v.get("id").and_then(Value::as_u64)
}

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[derive(Clone)]
pub enum Client {
    Http(Arc<HttpClient>),
    Stdio(Arc<StdioClient>),
}

impl Client {
    /// One `tools/call echo`, checked, bounded by `timeout`.
    pub async fn echo(&self, timeout: Duration) -> Outcome {
        match self {
            Client::Http(c) => c.echo(timeout).await,
            Client::Stdio(c) => c.echo(timeout).await,
        }
    }

    /// Answers whose id matched no outstanding call (stdio only; HTTP sees them per call).
    pub fn unsolicited(&self) -> u64 {
        match self {
            Client::Http(_) => 0,
            Client::Stdio(c) => c.unsolicited.load(Ordering::Relaxed),
        }
    }

    /// Ends the session politely (HTTP DELETE, or stdin EOF).
    pub async fn close(&self) {
        match self {
            Client::Http(c) => c.close().await,
            Client::Stdio(c) => c.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streamable HTTP

pub struct HttpClient {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
    next_id: AtomicU64,
    /// Speaks 2026-07-28: every request self-describing, no session.
    modern: bool,
}

impl HttpClient {
    /// Opens an MCP session on `url` (with `Authorization: Bearer <bearer>` if given):
    /// `initialize`, then `notifications/initialized`.
    pub async fn connect(
        url: &str,
        bearer: Option<&str>,
        pool: usize,
        timeout: Duration,
    ) -> Result<HttpClient, String> {
        let mut client = HttpClient::new(url, bearer, pool, timeout)?;
        client.open_session().await?;
        Ok(client)
    }

    /// A 2026-07-28 client of `url`: nothing to open; each `tools/call echo` carries its
    /// version and capabilities, and the routing headers.
    pub fn modern(
        url: &str,
        bearer: Option<&str>,
        pool: usize,
        timeout: Duration,
    ) -> Result<HttpClient, String> {
        let mut client = HttpClient::new(url, bearer, pool, timeout)?;
        client.modern = true;
        for (name, value) in [
            (PROTOCOL_VERSION_HEADER, MODERN_VERSION),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ] {
            client.headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        Ok(client)
    }

    fn new(
        url: &str,
        bearer: Option<&str>,
        pool: usize,
        timeout: Duration,
    ) -> Result<HttpClient, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "the bearer token is not a valid header value".to_owned())?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(HttpClient {
            http,
            url: url.to_owned(),
            headers,
            next_id: AtomicU64::new(2),
            modern: false,
        })
    }

    /// `initialize`, then `notifications/initialized`, on a 2025-11-25 session.
    async fn open_session(&mut self) -> Result<(), String> {
        let client = self;
        let resp = client
            .post(initialize_request(1))
            .await
            .map_err(|e| format!("initialize: {e}"))?;
        let status = resp.status();
        let session = resp.headers().get(SESSION_HEADER).cloned();
        let answer = client.answer(resp, 1).await;
        if status != StatusCode::OK {
            return Err(format!("initialize: HTTP {status}"));
        }
        match answer {
            Ok(v) if v.get("result").is_some() => {}
            Ok(v) => return Err(format!("initialize failed: {v}")),
            Err(e) => return Err(format!("initialize: {e}")),
        }
        let session = session.ok_or("initialize: no Mcp-Session-Id header in the response")?;
        client
            .headers
            .insert(HeaderName::from_static(SESSION_HEADER), session);
        client.headers.insert(
            HeaderName::from_static(PROTOCOL_VERSION_HEADER),
            HeaderValue::from_static(PROTOCOL_VERSION),
        );
        let resp = client
            .post(INITIALIZED.to_owned())
            .await
            .map_err(|e| format!("notifications/initialized: {e}"))?;
        let status = resp.status();
        let _ = resp.bytes().await;
        if !status.is_success() {
            return Err(format!("notifications/initialized: HTTP {status}"));
        }
        Ok(())
    }

    async fn post(&self, body: String) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
    }

    /// The JSON-RPC answer with id `id` from a response (JSON, JSON array, or SSE stream; the
    /// stream is read to its end, which the server should reach right after the answer).
    async fn answer(&self, mut resp: reqwest::Response, id: u64) -> Result<Value, String> {
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let mut others: Vec<String> = Vec::new();
        if !sse {
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("reading body: {e}"))?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("bad JSON body ({e}): {}", snippet(&body)))?;
            let items = match v {
                Value::Array(items) => items,
                v => vec![v],
            };
            for item in items {
                if id_of(&item) == Some(id) {
                    return Ok(item);
                }
                others.push(item.get("id").map_or("none".into(), Value::to_string));
            }
            return Err(format!(
                "MISMATCH: no answer for id {id}; ids seen: {others:?}"
            ));
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut done = false;
        // Bounded by the client timeout and by the stream's end.
        while !done {
            match resp
                .chunk()
                .await
                .map_err(|e| format!("reading SSE: {e}"))?
            {
                Some(chunk) => buf.extend(chunk.iter().copied().filter(|&b| b != b'\r')),
                None => {
                    buf.extend_from_slice(b"\n\n");
                    done = true;
                }
            }
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                if let Some(v) = sse_event_json(&event)? {
                    if id_of(&v) == Some(id) {
                        // The server should end the stream after the answer. Read to its end, as
                        // a client must before reusing the connection (bounded by the timeout).
                        while !done {
                            done = resp
                                .chunk()
                                .await
                                .map_err(|e| format!("reading SSE after the answer: {e}"))?
                                .is_none();
                        }
                        return Ok(v);
                    }
                    if let Some(other) = v.get("id") {
                        others.push(other.to_string());
                    }
                }
            }
        }
        if others.is_empty() {
            Err(format!("SSE stream ended without an answer for id {id}"))
        } else {
            Err(format!(
                "MISMATCH: SSE stream had no answer for id {id}; ids seen: {others:?}"
            ))
        }
    }

    /// One `tools/call` of `name` with `arguments`: the answer, whatever it is.
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}).to_string();
        let call = async {
            let resp = self.post(body).await.map_err(|e| format!("id {id}: {e}"))?;
            self.answer(resp, id).await
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| format!("id {id}: timed out after {timeout:?}"))?
    }

    async fn echo(&self, timeout: Duration) -> Outcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = async {
            let resp = self
                .post(echo_request(id, self.modern))
                .await
                .map_err(|e| format!("id {id}: {e}"))?;
            let status = resp.status();
            if status != StatusCode::OK {
                let body = resp.bytes().await.unwrap_or_default();
                return Err(format!("id {id}: HTTP {status}: {}", snippet(&body)));
            }
            self.answer(resp, id).await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Outcome::Error(format!("id {id}: timed out after {timeout:?}")),
            Ok(Err(e)) if e.starts_with("MISMATCH: ") => Outcome::Mismatch(e),
            Ok(Err(e)) => Outcome::Error(e),
            Ok(Ok(v)) => check_echo(&v, id),
        }
    }

    async fn close(&self) {
        let _ = self
            .http
            .delete(&self.url)
            .headers(self.headers.clone())
            .send()
            .await;
    }
}

/// The JSON of an SSE event's `data:` lines, if it has any.
fn sse_event_json(event: &[u8]) -> Result<Option<Value>, String> {
    let text = String::from_utf8_lossy(event);
    let mut data = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    if data.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&data)
        .map(Some)
        .map_err(|e| format!("bad JSON in SSE event ({e}): {}", snippet(data.as_bytes())))
}

// ---------------------------------------------------------------------------------------------
// stdio (newline-delimited JSON-RPC)

enum Outgoing {
    Line(String),
    Close,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct StdioClient {
    tx: mpsc::UnboundedSender<Outgoing>,
    pending: Pending,
    next_id: AtomicU64,
    unsolicited: Arc<AtomicU64>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StdioClient {
    /// Starts the reader and writer tasks and performs the MCP handshake.
    pub async fn connect(
        stdin: ChildStdin,
        stdout: ChildStdout,
        timeout: Duration,
    ) -> Result<StdioClient, String> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let pending: Pending = Arc::default();
        let unsolicited = Arc::new(AtomicU64::new(0));
        // Writer: batches whatever is queued into one flush, like a real client would.
        let writer = tokio::spawn(async move {
            let mut out = BufWriter::with_capacity(64 * 1024, stdin);
            while let Some(msg) = rx.recv().await {
                let mut msg = Some(msg);
                while let Some(m) = msg.take() {
                    match m {
                        Outgoing::Line(line) => {
                            if out.write_all(line.as_bytes()).await.is_err()
                                || out.write_all(b"\n").await.is_err()
                            {
                                return;
                            }
                        }
                        Outgoing::Close => {
                            let _ = out.flush().await;
                            let _ = out.shutdown().await;
                            return;
                        }
                    }
                    msg = rx.try_recv().ok();
                }
                if out.flush().await.is_err() {
                    return;
                }
            }
        });
        // Reader: routes each answer to its caller by id.
        let (p, u) = (Arc::clone(&pending), Arc::clone(&unsolicited));
        tokio::spawn(async move {
            let mut lines = BufReader::with_capacity(64 * 1024, stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    eprintln!(
                        "bench: ignoring a non-JSON stdout line: {}",
                        snippet(line.as_bytes())
                    );
                    u.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                // Server→client requests and notifications carry a method; the echo tool sends none.
                if v.get("method").is_some() {
                    continue;
                }
                let waiter = id_of(&v).and_then(|id| lock(&p).remove(&id));
                match waiter {
                    Some(w) => {
                        let _ = w.send(v);
                    }
                    None => {
                        u.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // EOF: every caller still waiting gets an error (its sender is dropped).
            lock(&p).clear();
        });
        let client = StdioClient {
            tx,
            pending,
            next_id: AtomicU64::new(2),
            unsolicited,
            writer: Mutex::new(Some(writer)),
        };
        match client.request(1, initialize_request(1), timeout).await {
            Ok(v) if v.get("result").is_some() => {}
            Ok(v) => return Err(format!("initialize failed: {v}")),
            Err(e) => return Err(format!("initialize: {e}")),
        }
        client
            .tx
            .send(Outgoing::Line(INITIALIZED.to_owned()))
            .map_err(|_| "the writer stopped".to_owned())?;
        Ok(client)
    }

    async fn request(&self, id: u64, line: String, timeout: Duration) -> Result<Value, String> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if self.tx.send(Outgoing::Line(line)).is_err() {
            lock(&self.pending).remove(&id);
            return Err(format!("id {id}: the writer stopped"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(format!("id {id}: the process closed its stdout")),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(format!("id {id}: timed out after {timeout:?}"))
            }
        }
    }

    async fn echo(&self, timeout: Duration) -> Outcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match self.request(id, echo_request(id, false), timeout).await {
            Ok(v) => check_echo(&v, id),
            Err(e) => Outcome::Error(e),
        }
    }

    async fn close(&self) {
        let _ = self.tx.send(Outgoing::Close);
        let writer = lock(&self.writer).take();
        if let Some(w) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_checks() {
        let ok = serde_json::json!({"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"m-7"}]}});
        assert!(matches!(check_echo(&ok, 7), Outcome::Ok));
        let wrong = serde_json::json!({"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"m-8"}]}});
        assert!(matches!(check_echo(&wrong, 7), Outcome::Mismatch(_)));
        let err = serde_json::json!({"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"x"}});
        assert!(matches!(check_echo(&err, 7), Outcome::Error(_)));
    }

    #[test]
    fn requests_are_json() {
        let v: Value = serde_json::from_str(&echo_request(42, false)).unwrap_or_default();
        assert_eq!(
            v.pointer("/params/arguments/message"),
            Some(&Value::from("m-42"))
        );
        let v: Value = serde_json::from_str(&initialize_request(1)).unwrap_or_default();
        assert_eq!(v["params"]["protocolVersion"], PROTOCOL_VERSION);
    }

    #[test]
    fn sse_events() {
        let ev = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n";
        let v = sse_event_json(ev).ok().flatten().unwrap_or_default();
        assert_eq!(id_of(&v), Some(3));
        assert!(matches!(sse_event_json(b": ping\n\n"), Ok(None)));
    }
}
