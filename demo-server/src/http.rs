//! The Streamable HTTP transport, on the single path `/mcp`.
//!
//! - `POST /mcp` carries one JSON-RPC message. `initialize` opens a session (the
//!   `Mcp-Session-Id` response header); everything else must name a live session (missing header
//!   → 400, unknown session → 404). Notifications and responses get 202 with no body. Requests
//!   get an `application/json` response, except a `tools/call` with a progress token from a
//!   client that accepts `text/event-stream`: that one is answered as an SSE stream carrying the
//!   progress notifications and then the response.
//! - `GET /mcp` → 405 (this server offers no standalone server→client stream).
//! - `DELETE /mcp` ends the session.
//!
//! Requests carrying an `Origin` header that is not a loopback origin are refused (403), as the
//! spec asks of local servers to defeat DNS rebinding.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::peer::Peer;
use crate::rpc::{self, Incoming, Inflight, RpcError};
use crate::server::{Server, SUPPORTED_PROTOCOL_VERSIONS};

const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

struct Session {
    inflight: Arc<Inflight>,
}

struct HttpState {
    server: Server,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl HttpState {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the HTTP server on `listen` until the process is stopped.
pub fn run(server: Server, listen: SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-warden-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mcp-warden-demo: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("mcp-warden-demo: cannot read the bound address: {e}");
                return ExitCode::FAILURE;
            }
        };
        {
            let mut stdout = std::io::stdout().lock();
            if writeln!(stdout, "listening on http://{addr}/mcp")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                eprintln!("mcp-warden-demo: could not announce the address on stdout");
            }
        }
        eprintln!(
            "mcp-warden-demo {}: serving MCP on http://{addr}/mcp",
            env!("CARGO_PKG_VERSION")
        );
        let state = Arc::new(HttpState {
            server,
            sessions: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
            .with_state(state);
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        match axum::serve(listener, app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mcp-warden-demo: the HTTP server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn error_response(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    json_response(status, rpc::encode_error(id, &RpcError::new(code, message)))
}

/// `None` if the request may proceed, else the refusal.
fn check_origin(headers: &HeaderMap) -> Option<Response> {
    let origin = headers.get(header::ORIGIN)?;
    let allowed = origin.to_str().ok().is_some_and(|o| {
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .unwrap_or("");
        let host = match rest.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => rest.split([':', '/']).next().unwrap_or(""),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    (!allowed).then(|| {
        error_response(
            StatusCode::FORBIDDEN,
            &Value::Null,
            rpc::INVALID_REQUEST,
            "Forbidden: Origin is not a loopback origin",
        )
    })
}

/// Why a request names no live session.
enum NoSession {
    Missing,
    Unknown,
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Missing => error_response(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                rpc::INVALID_REQUEST,
                "Bad Request: missing Mcp-Session-Id header",
            ),
            NoSession::Unknown => error_response(
                StatusCode::NOT_FOUND,
                &Value::Null,
                -32001,
                "Session not found",
            ),
        }
    }
}

/// The session id the request names, if any.
fn session_id(headers: &HeaderMap) -> Result<&str, NoSession> {
    let value = headers.get(SESSION_HEADER).ok_or(NoSession::Missing)?;
    value.to_str().map_err(|_| NoSession::Unknown)
}

/// Looks up the session named by the request.
fn session_of(state: &HttpState, headers: &HeaderMap) -> Result<Arc<Session>, NoSession> {
    let id = session_id(headers)?;
    state.sessions().get(id).cloned().ok_or(NoSession::Unknown)
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

async fn post_mcp(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = check_origin(&headers) {
        return refusal;
    }
    let message = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => rpc::classify(value),
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                rpc::PARSE_ERROR,
                &format!("Parse error: {e}"),
            )
        }
    };
    let (id, method, params) = match message {
        Incoming::Invalid { id, reason } => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &id,
                rpc::INVALID_REQUEST,
                &format!("Invalid Request: {reason}"),
            )
        }
        Incoming::Request { id, method, params } if method == "initialize" => {
            return initialize(&state, &id, params).await;
        }
        Incoming::Request { id, method, params } => (id, method, params),
        Incoming::Notification { method, params } => {
            let session = match session_of(&state, &headers) {
                Ok(s) => s,
                Err(refusal) => return refusal.into_response(),
            };
            if method == "notifications/cancelled" {
                if let Some(id) = params.as_ref().and_then(|p| p.get("requestId")) {
                    session.inflight.cancel(id);
                }
            }
            return StatusCode::ACCEPTED.into_response();
        }
        Incoming::Response { .. } => {
            // This transport never sends the client requests, so there is nothing to match.
            return match session_of(&state, &headers) {
                Ok(_) => StatusCode::ACCEPTED.into_response(),
                Err(refusal) => refusal.into_response(),
            };
        }
    };
    let session = match session_of(&state, &headers) {
        Ok(s) => s,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(version) = headers.get(PROTOCOL_VERSION_HEADER) {
        let known = version
            .to_str()
            .is_ok_and(|v| SUPPORTED_PROTOCOL_VERSIONS.contains(&v));
        if !known {
            return error_response(
                StatusCode::BAD_REQUEST,
                &id,
                rpc::INVALID_REQUEST,
                "Bad Request: unsupported MCP-Protocol-Version",
            );
        }
    }
    let streams = method == "tools/call"
        && rpc::progress_token(params.as_ref()).is_some()
        && accepts_event_stream(&headers);
    if streams {
        return sse_call(state, session, id, method, params);
    }
    let mut ticket = session.inflight.register(&id);
    let peer = Peer::http(None);
    let outcome = tokio::select! {
        biased;
        () = ticket.cancelled() => return StatusCode::ACCEPTED.into_response(),
        outcome = state.server.handle_request(&method, params, &peer) => outcome,
    };
    if !ticket.finish() {
        // Cancelled meanwhile: no JSON-RPC response, per the spec.
        return StatusCode::ACCEPTED.into_response();
    }
    json_response(StatusCode::OK, rpc::encode_response(&id, &outcome))
}

async fn initialize(state: &HttpState, id: &Value, params: Option<Value>) -> Response {
    let Some(session_id) = crate::random_hex::<16>() else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            rpc::INTERNAL_ERROR,
            "Internal error: no randomness for a session id",
        );
    };
    let outcome = state
        .server
        .handle_request("initialize", params, &Peer::http(None))
        .await;
    let Ok(header_value) = HeaderValue::from_str(&session_id) else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            rpc::INTERNAL_ERROR,
            "Internal error: bad session id",
        );
    };
    state.sessions().insert(
        session_id,
        Arc::new(Session {
            inflight: Arc::new(Inflight::default()),
        }),
    );
    let mut response = json_response(StatusCode::OK, rpc::encode_response(id, &outcome));
    response.headers_mut().insert(SESSION_HEADER, header_value);
    response
}

/// Answers a `tools/call` as an SSE stream: notifications as they happen, then the response.
fn sse_call(
    state: Arc<HttpState>,
    session: Arc<Session>,
    id: Value,
    method: String,
    params: Option<Value>,
) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut ticket = session.inflight.register(&id);
    let peer = Peer::http(Some(tx.clone()));
    tokio::spawn(async move {
        let outcome = tokio::select! {
            biased;
            () = ticket.cancelled() => return,
            // The client hung up: stop working for nobody.
            () = tx.closed() => return,
            outcome = state.server.handle_request(&method, params, &peer) => outcome,
        };
        if ticket.finish() {
            let _ = tx.send(rpc::encode_response(&id, &outcome));
        }
        // Dropping `tx` and `peer` ends the stream.
    });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(SseStream { rx }),
    )
        .into_response()
}

/// Frames each queued JSON-RPC message as one SSE `message` event.
struct SseStream {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl futures_core::Stream for SseStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|msg| {
            msg.map(|json| {
                let mut event = Vec::with_capacity(json.len() + 24);
                event.extend_from_slice(b"event: message\ndata: ");
                event.extend_from_slice(&json);
                event.extend_from_slice(b"\n\n");
                Ok(Bytes::from(event))
            })
        })
    }
}

async fn get_mcp(headers: HeaderMap) -> Response {
    if let Some(refusal) = check_origin(&headers) {
        return refusal;
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST, DELETE"))],
    )
        .into_response()
}

async fn delete_mcp(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = check_origin(&headers) {
        return refusal;
    }
    let removed =
        session_id(&headers).and_then(|id| state.sessions().remove(id).ok_or(NoSession::Unknown));
    match removed {
        Ok(session) => {
            session.inflight.cancel_all();
            StatusCode::OK.into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).expect("header"),
        );
        h
    }

    #[test]
    fn origins() {
        assert!(check_origin(&HeaderMap::new()).is_none());
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8080",
        ] {
            assert!(check_origin(&with_origin(ok)).is_none(), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "null",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
        ] {
            assert!(check_origin(&with_origin(bad)).is_some(), "{bad}");
        }
    }
}
