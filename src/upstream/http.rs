//! A Streamable HTTP upstream (2025-03-26 and later), with reqwest.
//!
//! Each message is POSTed on its own task (so slow calls do not block fast ones); a response
//! comes back as JSON or as an SSE stream that may carry related requests and notifications
//! first. After `initialize` we keep the session id and protocol version for every later request,
//! open the GET stream for server-initiated messages, and when the upstream no longer knows our
//! session (404, the spec's answer, or a 400 naming the session) start a new one transparently
//! and send the refused request again, once. Dropping the pipe DELETEs the session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;

use super::transport::{Response, Transport};
use super::{Inbound, Inlet, Pipe, UpstreamError};
use crate::config::HttpSpec;
use crate::error::Failure;
use crate::jsonrpc::{self, Kind, Message, Payload};
use crate::mcp::{HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID};
use crate::sse;
use crate::util::lock;

/// Prefix of the handshake error that makes `transport = auto` fall back to legacy HTTP+SSE.
pub(crate) const LEGACY_HINT: &str = "legacy:";
/// Largest upstream response or SSE event we accept.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The headers of every POST (static values: nothing parsed per request).
fn post_headers() -> [(HeaderName, HeaderValue); 2] {
    [
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        ),
    ]
}

fn event_stream() -> HeaderValue {
    HeaderValue::from_static("text/event-stream")
}

const SESSION_HEADER: HeaderName = HeaderName::from_static(HEADER_SESSION_ID);
const VERSION_HEADER: HeaderName = HeaderName::from_static(HEADER_PROTOCOL_VERSION);
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

struct State {
    name: String,
    transport: Transport,
    headers: HeaderMap,
    session: Mutex<Option<HeaderValue>>,
    version: Mutex<Option<HeaderValue>>,
    /// The initialize request as first sent, replayed when the upstream loses our session.
    init: Mutex<Option<Message>>,
    reinit: tokio::sync::Mutex<()>,
    get_started: AtomicBool,
    inlet: Inlet,
    /// 2026-07-28 requests in flight, by id (JSON text): what ends each one's POST.
    streams: Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Sender<()>>>,
    /// An OAuth-protected upstream's client (shared by the upstream's connections).
    oauth: Option<Arc<super::oauth::OAuth>>,
}

/// reqwest's client for an upstream, with the upstream's TLS settings when it has some.
pub(crate) fn client_with(
    tls: Option<&crate::config::UpstreamTls>,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90));
    let builder = match tls {
        Some(t) => builder.use_preconfigured_tls(crate::tls::client_config(Some(t))?),
        None => builder,
    };
    builder.build().map_err(|e| e.to_string())
}

pub(crate) fn header_map(spec: &HttpSpec) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        // Validated with the config.
        if let (Ok(k), Ok(mut v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v.expose()),
        ) {
            v.set_sensitive(true);
            headers.insert(k, v);
        }
    }
    headers
}

/// `hs`: whom the connection acts for (per-agent sign-ins, token exchange).
pub(super) fn spawn(
    name: &str,
    spec: &HttpSpec,
    inlet: Inlet,
    hs: &super::Handshake,
) -> Result<Pipe, UpstreamError> {
    // Without a sign-in there is nothing to send (the upstream would only answer 401), and
    // no client is built: a session looks again every few seconds.
    if let Some(by) = super::oauth::OAuth::missing_sign_in(name, spec, hs) {
        return Err(UpstreamError::SignIn {
            name: name.to_string(),
            by,
        });
    }
    let url = reqwest::Url::parse(&spec.url).map_err(|e| UpstreamError::Start {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    let transport =
        Transport::new(&url, spec.tls.as_ref()).map_err(|reason| UpstreamError::Start {
            name: name.to_string(),
            reason,
        })?;
    let oauth =
        super::oauth::OAuth::shared(name, spec, hs).map_err(|reason| UpstreamError::Start {
            name: name.to_string(),
            reason,
        })?;
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(256);
    let state = Arc::new(State {
        name: name.to_string(),
        transport,
        headers: header_map(spec),
        session: Mutex::new(None),
        version: Mutex::new(None),
        init: Mutex::new(None),
        reinit: tokio::sync::Mutex::new(()),
        get_started: AtomicBool::new(false),
        inlet,
        streams: Mutex::default(),
        oauth,
    });
    let for_direct = state.clone();
    let direct: super::Direct = Arc::new(move |msg| Box::pin(post(for_direct.clone(), msg, true)));
    // Calls and notifications are posted from the caller's own task (`direct`); this task
    // ends the upstream session when the connection is dropped (its sender closes).
    crate::task::detach(tracing::Span::current(), async move {
        while let Some(msg) = out_rx.recv().await {
            post(state.clone(), msg, true).await;
        }
        state.get_started.store(true, Ordering::Relaxed);
        let session = lock(&state.session).take();
        if let Some(sid) = session {
            let extra = [(SESSION_HEADER, sid)];
            let limit = Some(Duration::from_secs(5));
            let _ = state
                .send(Method::DELETE, false, &extra, Bytes::new(), limit)
                .await;
        }
    });
    Ok(Pipe {
        tx: out_tx,
        direct: Some(direct),
    })
}

impl State {
    /// Ends the POST of the 2026-07-28 request a `notifications/cancelled` names; `false`
    /// when it names none (a 2025 session's request: the notification is sent).
    fn end_stream(&self, cancel: &Message) -> bool {
        let Some(p) = cancel
            .params()
            .and_then(|p| serde_json::from_str::<crate::mcp::CancelledParams<'_>>(p).ok())
        else {
            return false;
        };
        match lock(&self.streams).remove(p.request_id.get()) {
            Some(stop) => {
                let _ = stop.send(());
                true
            }
            None => false,
        }
    }

    /// One request: the configured headers, our session id and protocol version when
    /// `with_session` (and we have them), then `extra`.
    async fn send(
        &self,
        method: Method,
        with_session: bool,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
        limit: Option<Duration>,
    ) -> Result<Response, String> {
        let mut headers = self.headers.clone();
        if with_session {
            if let Some(s) = lock(&self.session).clone() {
                headers.insert(SESSION_HEADER, s);
            }
            if let Some(v) = lock(&self.version).clone() {
                headers.insert(VERSION_HEADER, v);
            }
        }
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        let Some(oauth) = &self.oauth else {
            return self.transport.send(method, headers, body, limit).await;
        };
        let used = oauth.authorization().await;
        if let Some(h) = &used {
            headers.insert(reqwest::header::AUTHORIZATION, h.clone());
        }
        let resp = self
            .transport
            .send(method.clone(), headers.clone(), body.clone(), limit)
            .await?;
        let challenge = super::oauth::challenge_of(resp.headers()).cloned();
        let fresh = match resp.status() {
            // Refused before it was processed: sent again once, with a new token.
            StatusCode::UNAUTHORIZED => oauth
                .refused(used.as_ref(), challenge.as_ref())
                .await
                .map_err(|e| format!("no OAuth token: {e}"))?,
            // A scope is missing: sent again once with a token that has it, when mcp-warden
            // can get one by itself; else the refusal stands (an operator signs in again).
            StatusCode::FORBIDDEN => match oauth.step_up(used.as_ref(), challenge.as_ref()).await {
                Some(fresh) => fresh,
                None => return Ok(resp),
            },
            _ => return Ok(resp),
        };
        headers.insert(reqwest::header::AUTHORIZATION, fresh);
        self.transport.send(method, headers, body, limit).await
    }

    /// Answers `msg` (a request) with `failure` in the upstream's place; `text` is the detail,
    /// for the log. The handshake's own failures keep their detail in the answer: they never
    /// reach an agent (they become the upstream's start error, logged), and the fallback to the
    /// legacy transport reads it.
    async fn fail(&self, msg: &Message, failure: Failure, text: String) {
        if msg.kind() != Kind::Request {
            tracing::warn!(method = ?msg.method(), "{text}");
            return;
        }
        let err = if msg.method() == Some("initialize") {
            tracing::warn!(method = ?msg.method(), "{text}");
            jsonrpc::error_response(msg.id_str(), failure.code(), &text)
        } else {
            failure.answer(msg.id_str(), &text)
        };
        self.inlet.deliver(Inbound {
            msg: err,
            related: None,
        });
    }

    fn unavailable(&self) -> Failure {
        Failure::Unavailable {
            upstream: self.name.to_string(),
        }
    }

    fn bad_answer(&self) -> Failure {
        Failure::BadAnswer {
            upstream: self.name.to_string(),
        }
    }

    /// Starts a new upstream session with the original initialize request (the upstream forgot
    /// ours). Serialised: concurrent 404s trigger one re-initialisation.
    async fn reinitialize(&self, stale: Option<HeaderValue>) -> bool {
        let _one = self.reinit.lock().await;
        if lock(&self.session).as_ref() != stale.as_ref() {
            return true; // someone else already did it
        }
        let Some(init) = lock(&self.init).clone() else {
            return false;
        };
        *lock(&self.session) = None;
        let init = init.with_id("\"mcp-warden-reinit\"");
        let resp = self
            .send(
                Method::POST,
                false,
                &post_headers(),
                init.into_bytes(),
                None,
            )
            .await;
        let Ok(resp) = resp else { return false };
        if !resp.status().is_success() {
            return false;
        }
        if let Some(sid) = resp.header(&SESSION_HEADER) {
            *lock(&self.session) = Some(sid.clone());
        }
        // Drain the answer (JSON or SSE) without forwarding it: it answers nobody downstream.
        let _ = read_limited(resp).await;
        let note = jsonrpc::notification("notifications/initialized", None);
        let _ = self
            .send(Method::POST, true, &post_headers(), note.into_bytes(), None)
            .await;
        tracing::info!("upstream session re-initialised: the upstream had lost ours");
        true
    }
}

async fn read_limited(mut resp: Response) -> Result<Bytes, String> {
    let too_large = || format!("response larger than {MAX_BODY} bytes");
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    // Most answers arrive in one piece: that piece is the body, not a copy of it.
    let Some(first) = resp.chunk().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = resp.chunk().await? else {
        return (first.len() <= MAX_BODY)
            .then_some(first)
            .ok_or_else(too_large);
    };
    let append = |buf: &mut Vec<u8>, chunk: &[u8]| {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        buf.extend_from_slice(chunk);
        Ok(())
    };
    let mut buf = Vec::with_capacity(first.len() + second.len());
    append(&mut buf, &first)?;
    append(&mut buf, &second)?;
    while let Some(chunk) = resp.chunk().await? {
        append(&mut buf, &chunk)?;
    }
    Ok(Bytes::from(buf))
}

/// Whether the upstream refused a request because it no longer knows our session (it was
/// restarted, or reaped the session): 404, the specification's answer, or a 400 whose JSON-RPC
/// error names the session, which is what the TypeScript SDK's examples (server-everything
/// among them) answer. Either way the request was refused before it was read, so it was not
/// executed. Any other answer is handed back; a 400 for another reason keeps its status (its
/// body, read here, is not forwarded anyway).
async fn session_gone(mut resp: Response) -> Result<Response, ()> {
    match resp.status() {
        StatusCode::NOT_FOUND => Err(()),
        StatusCode::BAD_REQUEST => {
            // Such a refusal is a few hundred bytes; a longer body is not one.
            const MAX: usize = 4096;
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() > MAX {
                    return Ok(resp);
                }
            }
            #[derive(serde::Deserialize)]
            struct Refusal {
                error: Detail,
            }
            #[derive(serde::Deserialize)]
            struct Detail {
                message: String,
            }
            let names_session = serde_json::from_slice::<Refusal>(&body)
                .is_ok_and(|r| r.error.message.to_ascii_lowercase().contains("session"));
            if names_session {
                Err(())
            } else {
                Ok(resp)
            }
        }
        _ => Ok(resp),
    }
}

fn is_sse(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// The headers a 2026-07-28 request carries beside its body (`MCP-Protocol-Version`,
/// `Mcp-Method`, `Mcp-Name`), when the request names that revision in `params._meta`: the
/// body says which era a request is in, and a modern one belongs to no session.
fn modern_headers(state: &State, msg: &Message) -> Option<Vec<(HeaderName, HeaderValue)>> {
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(rename = "_meta", borrow, default)]
        meta: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        name: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        uri: Option<&'a serde_json::value::RawValue>,
        #[serde(rename = "taskId", borrow, default)]
        task_id: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        arguments: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
        version: String,
    }
    if msg.kind() != Kind::Request {
        return None;
    }
    let params = msg.params()?;
    if !params.contains(crate::mcp::META_PROTOCOL_VERSION) {
        return None;
    }
    let p: P<'_> = serde_json::from_str(params).ok()?;
    let meta: Meta = serde_json::from_str(p.meta?.get()).ok()?;
    let method = msg.method()?;
    let mut out = vec![
        (VERSION_HEADER, HeaderValue::from_str(&meta.version).ok()?),
        (
            HeaderName::from_static(crate::mcp::HEADER_METHOD),
            HeaderValue::from_str(method).ok()?,
        ),
    ];
    let named = match crate::mcp::named_member(method) {
        Some("name") => p.name,
        Some("uri") => p.uri,
        Some(_) => p.task_id,
        None => None,
    };
    if let Some(n) = named.and_then(crate::mcp::raw_str) {
        let v = crate::mcp::header_value_encode(&n);
        out.push((
            HeaderName::from_static(crate::mcp::HEADER_NAME),
            HeaderValue::from_str(&v).ok()?,
        ));
        // The arguments the tool wants as headers too (`x-mcp-header`), from the call as it
        // is sent: after renames and pins.
        let wanted = (method == "tools/call")
            .then(|| state.inlet.header_params(&n))
            .flatten();
        if let Some(params) = wanted {
            let args: serde_json::Map<String, serde_json::Value> = p
                .arguments
                .and_then(|a| serde_json::from_str(a.get()).ok())
                .unwrap_or_default();
            for (name, value) in crate::mcp::header_params::emit(&params, &args) {
                out.push((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_str(&value).ok()?,
                ));
            }
        }
    }
    Some(out)
}

/// Posts one message. A 2026-07-28 request runs until its answer or until it is cancelled:
/// the revision cancels by closing the request's stream (there is no notification over
/// HTTP), so a `notifications/cancelled` for one of them ends its POST instead of being sent.
/// A `subscriptions/listen` runs beside the sender for as long as the subscription.
async fn post(state: Arc<State>, msg: Message, may_retry: bool) {
    if msg.kind() == Kind::Notification
        && msg.method() == Some("notifications/cancelled")
        && state.end_stream(&msg)
    {
        return;
    }
    let modern = modern_headers(&state, &msg);
    let Some(key) = msg
        .id_str()
        .filter(|_| modern.is_some() && msg.kind() == Kind::Request)
        .map(str::to_string)
    else {
        return post_inner(state, msg, may_retry, modern).await;
    };
    let listen = msg.method() == Some("subscriptions/listen");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    lock(&state.streams).insert(key.clone(), stop);
    // However the POST ends (answered, cancelled, or its caller gone), it is forgotten.
    struct Forget(Arc<State>, String);
    impl Drop for Forget {
        fn drop(&mut self) {
            lock(&self.0.streams).remove(&self.1);
        }
    }
    let forget = Forget(state.clone(), key);
    let run = async move {
        let _forget = forget;
        tokio::select! {
            () = post_inner(state.clone(), msg, may_retry, modern) => {}
            _ = stopped => {}
            () = state.inlet.closed() => {}
        }
    };
    if listen {
        crate::task::detach(tracing::Span::current(), run);
    } else {
        run.await;
    }
}

async fn post_inner(
    state: Arc<State>,
    msg: Message,
    may_retry: bool,
    modern: Option<Vec<(HeaderName, HeaderValue)>>,
) {
    let is_init = msg.method() == Some("initialize");
    if is_init {
        *lock(&state.init) = Some(msg.clone());
    }
    let related = msg.id_str().and_then(|s| s.parse::<u64>().ok());
    let session_before = match modern {
        Some(_) => None,
        None => lock(&state.session).clone(),
    };
    let mut extra = post_headers().to_vec();
    extra.extend(modern.iter().flatten().cloned());
    let resp = state
        .send(
            Method::POST,
            !is_init && modern.is_none(),
            &extra,
            msg.bytes().clone(),
            None,
        )
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let text = format!("upstream {} unreachable: {e}", state.name);
            // (A connection error is no reason to try the legacy transport.)
            return state.fail(&msg, state.unavailable(), text).await;
        }
    };
    let status = resp.status();
    let resp = if !is_init && session_before.is_some() && may_retry {
        match session_gone(resp).await {
            Ok(resp) => resp,
            Err(()) => {
                // Refused before it was read: the request was not executed, so it is sent
                // again once, in the new session.
                if state.reinitialize(session_before).await {
                    return Box::pin(post_inner(state, msg, false, modern)).await;
                }
                return state
                    .fail(
                        &msg,
                        state.unavailable(),
                        format!("upstream {} lost the session", state.name),
                    )
                    .await;
            }
        }
    } else {
        resp
    };
    if !status.is_success() && modern.is_some() && status.is_client_error() {
        // 2026-07-28 refusals come with a JSON-RPC error for the request (400 with -32020,
        // -32021, -32022; 404 with -32601): that error is the answer.
        let answered = match read_limited(resp).await {
            Ok(body) => deliver(&state, body, related, false, msg.id_str()).await,
            Err(_) => false,
        };
        if !answered {
            let text = format!("upstream {} answered HTTP {}", state.name, status.as_u16());
            state.fail(&msg, state.bad_answer(), text).await;
        }
        return;
    }
    if !status.is_success() {
        let text = if is_init
            && matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) {
            format!("{LEGACY_HINT} upstream answered POST with HTTP {status}")
        } else {
            format!("upstream {} answered HTTP {}", state.name, status.as_u16())
        };
        return state.fail(&msg, state.bad_answer(), text).await;
    }
    if is_init {
        if let Some(sid) = resp.header(&SESSION_HEADER) {
            *lock(&state.session) = Some(sid.clone());
        }
    }
    if msg.kind() != Kind::Request {
        return; // 202 for notifications and responses; any body is ignored
    }
    let got_answer = if is_sse(&resp) {
        read_sse(&state, resp, related, is_init, msg.id_str()).await
    } else {
        match read_limited(resp).await {
            Ok(body) => deliver(&state, body, related, is_init, msg.id_str()).await,
            Err(e) => {
                state
                    .fail(
                        &msg,
                        state.bad_answer(),
                        format!("upstream {}: {e}", state.name),
                    )
                    .await;
                return;
            }
        }
    };
    if !got_answer {
        state
            .fail(
                &msg,
                state.bad_answer(),
                format!(
                    "upstream {} ended the response without an answer",
                    state.name
                ),
            )
            .await;
    }
}

/// Hands the messages in `body` to the connection; true if one of them answers `want_id`.
async fn deliver(
    state: &Arc<State>,
    body: Bytes,
    related: Option<u64>,
    is_init: bool,
    want_id: Option<&str>,
) -> bool {
    let msgs = match jsonrpc::parse_payload(body) {
        Ok(Payload::Single(m)) => vec![m],
        Ok(Payload::Batch(items)) => items.into_iter().filter_map(Result::ok).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "upstream sent an invalid JSON-RPC body");
            let jsonrpc::ParseError::TooDeep { id, request } = &e else {
                return false;
            };
            let why = e.to_string();
            match super::unreadable_answer(id.as_deref(), *request, &why) {
                Some(err) => vec![err],
                None => return false,
            }
        }
    };
    let mut answered = false;
    for m in msgs {
        if m.kind() == Kind::Response && m.id_str() == want_id {
            answered = true;
            if is_init {
                note_init(state, &m);
            }
        }
        if !state.inlet.deliver(Inbound { msg: m, related }) {
            return true;
        }
    }
    answered
}

fn note_init(state: &Arc<State>, m: &Message) {
    #[derive(serde::Deserialize)]
    struct R {
        #[serde(rename = "protocolVersion")]
        v: String,
    }
    if let Some(r) = m.result().and_then(|r| serde_json::from_str::<R>(r).ok()) {
        if let Ok(v) = HeaderValue::from_str(&r.v) {
            *lock(&state.version) = Some(v);
        }
    }
    if m.error().is_none() && !state.get_started.swap(true, Ordering::Relaxed) {
        crate::task::detach(tracing::Span::current(), get_loop(state.clone()));
    }
}

/// The GET stream for server-initiated messages. Ends when the pipe closes, when the upstream
/// does not offer one (405), or when the session is gone.
async fn get_loop(state: Arc<State>) {
    let mut last_event: Option<String> = None;
    let mut delay = Duration::from_millis(500);
    let mut failures = 0u32;
    while !state.inlet.is_closed() {
        let mut extra = vec![(ACCEPT, event_stream())];
        if let Some(id) = last_event
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            extra.push((LAST_EVENT_ID, id));
        }
        let resp = tokio::select! {
            r = state.send(Method::GET, true, &extra, Bytes::new(), None) => r,
            _ = state.inlet.closed() => return,
        };
        match resp {
            Ok(resp) if resp.status().is_success() && is_sse(&resp) => {
                failures = 0;
                let mut resp = resp;
                let mut parser = sse::Parser::new(MAX_BODY);
                let mut events = Vec::new();
                loop {
                    let chunk = tokio::select! {
                        c = resp.chunk() => c,
                        _ = state.inlet.closed() => return,
                    };
                    let Ok(Some(chunk)) = chunk else { break };
                    parser.push(&chunk, &mut events);
                    for ev in events.drain(..) {
                        if let Some(id) = ev.id {
                            last_event = Some(id);
                        }
                        if let Some(ms) = ev.retry {
                            delay = Duration::from_millis(ms.clamp(100, 60_000));
                        }
                        if ev.data.is_empty() {
                            continue;
                        }
                        deliver(&state, Bytes::from(ev.data), None, false, None).await;
                    }
                }
            }
            Ok(resp) if resp.status() == StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!("upstream offers no GET stream");
                return;
            }
            Ok(resp) => {
                failures += 1;
                tracing::debug!(status = resp.status().as_u16(), "GET stream refused");
            }
            Err(_) => failures += 1,
        }
        if failures > 5 {
            tracing::warn!("giving up on the upstream's GET stream");
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay * (1 << failures.min(5))) => {}
            _ = state.inlet.closed() => return,
        }
    }
}

/// Reads a POST's SSE stream until the answer to `want_id` arrives. If the upstream closes the
/// stream first (SEP-1699 polling) after giving event ids, resumes it with a GET carrying
/// `Last-Event-ID`, as the spec's resumability rules describe, a bounded number of times.
async fn read_sse(
    state: &Arc<State>,
    resp: Response,
    related: Option<u64>,
    is_init: bool,
    want_id: Option<&str>,
) -> bool {
    let mut last_event: Option<String> = None;
    let mut retry = Duration::from_millis(1000);
    if read_events(
        state,
        resp,
        related,
        is_init,
        want_id,
        &mut last_event,
        &mut retry,
    )
    .await
    {
        return true;
    }
    for _ in 0..5 {
        let Some(id) = last_event.clone() else {
            return false;
        };
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = state.inlet.closed() => return true,
        }
        let mut extra = vec![(ACCEPT, event_stream())];
        if let Ok(id) = HeaderValue::from_str(&id) {
            extra.push((LAST_EVENT_ID, id));
        }
        let resp = state
            .send(Method::GET, true, &extra, Bytes::new(), None)
            .await;
        match resp {
            Ok(r) if r.status().is_success() && is_sse(&r) => {
                if read_events(
                    state,
                    r,
                    related,
                    is_init,
                    want_id,
                    &mut last_event,
                    &mut retry,
                )
                .await
                {
                    return true;
                }
            }
            _ => return false,
        }
    }
    false
}

async fn read_events(
    state: &Arc<State>,
    mut resp: Response,
    related: Option<u64>,
    is_init: bool,
    want_id: Option<&str>,
    last_event: &mut Option<String>,
    retry: &mut Duration,
) -> bool {
    let mut parser = sse::Parser::new(MAX_BODY);
    let mut events = Vec::new();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "upstream SSE stream broke");
                return false;
            }
        };
        parser.push(&chunk, &mut events);
        let mut answered = false;
        for ev in events.drain(..) {
            if let Some(id) = ev.id {
                *last_event = Some(id);
            }
            if let Some(ms) = ev.retry {
                *retry = Duration::from_millis(ms.clamp(10, 30_000));
            }
            if ev.data.is_empty() {
                continue; // priming event / keep-alive
            }
            if deliver(state, Bytes::from(ev.data), related, is_init, want_id).await {
                answered = true;
            }
        }
        if answered {
            return true;
        }
    }
}
