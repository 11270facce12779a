//! The Streamable HTTP front (MCP 2025-11-25 transport rules; older clients too).
//!
//! POST carries messages: a request is answered with JSON when its answer is the first thing
//! ready, or with an SSE stream when related messages (progress, sampling, logging) come first;
//! notifications and responses get 202. `initialize` creates a session with a random
//! `Mcp-Session-Id`; other requests need it (400 without, 404 when unknown, expired or deleted).
//! GET opens the session's stream for messages not tied to a request, resumable with
//! `Last-Event-ID`. DELETE ends the session and its upstreams. Every response carries security
//! headers; `Host` and `Origin` are checked against DNS rebinding before anything else.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, ResponseMode};
use crate::identity::{AuthError, Authenticator, Caller};
use crate::jsonrpc::{self, code, Kind, Message, Payload};
use crate::mcp::{self, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID};
use crate::session::Session;
use crate::sse;
use crate::util::lock;

/// Events kept per session for `Last-Event-ID` replay on the GET stream.
const REPLAY: usize = 256;
const KEEPALIVE: Duration = Duration::from_secs(25);

struct HttpSession {
    session: Arc<Session>,
    /// Only this caller may use the session.
    caller: Caller,
    /// The sender side of the outbox (also held by the session as its general sink).
    session_general: mpsc::Sender<Message>,
    outbox: Arc<Mutex<Outbox>>,
}

struct Outbox {
    /// Taken by the open GET stream, put back when it ends.
    rx: Option<mpsc::Receiver<Message>>,
    history: VecDeque<(u64, Bytes)>,
    next_event: u64,
}

#[derive(Clone)]
pub struct Front {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: std::sync::RwLock<Arc<Config>>,
    /// The single-user token generated at start, if any (kept across reloads).
    generated: Option<String>,
    sessions: Mutex<HashMap<String, Arc<HttpSession>>>,
    local_addr: SocketAddr,
    /// The MCP endpoint's path and body limit (start-up values; a reload does not move them).
    path: String,
    max_body: usize,
    stopping: watch::Receiver<bool>,
    next_stream: std::sync::atomic::AtomicU64,
    shared: crate::session::Services,
    auth: std::sync::RwLock<Arc<Authenticator>>,
    throttle: crate::identity::Throttle,
    /// Last probe of each `required` upstream: `Err` says why it is not up (`/readyz`).
    required: Mutex<std::collections::BTreeMap<String, Result<(), String>>>,
}

fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = jsonrpc::error_response(None, code, message).into_bytes();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

// The `Err` of these lookups is the finished HTTP response itself, built once per refusal.
#[allow(clippy::result_large_err)]
impl Front {
    pub fn cfg(&self) -> Arc<Config> {
        self.inner
            .cfg
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a reloaded, valid config: credentials, shared upstreams and every live session
    /// switch to it at once. The listener (address, path, body limit) keeps its start-up values.
    pub fn apply(&self, mut cfg: Arc<Config>) {
        let old = self.cfg();
        if cfg.proxy.worker_threads != old.proxy.worker_threads {
            tracing::warn!("worker_threads keeps its start-up value until a restart");
        }
        if cfg.proxy.listen != old.proxy.listen
            || cfg.proxy.path != old.proxy.path
            || cfg.proxy.max_body_bytes != old.proxy.max_body_bytes
        {
            tracing::warn!(
                "listen address, path and body limit keep their start-up values until a restart"
            );
            let mut c = (*cfg).clone();
            c.proxy.listen = old.proxy.listen;
            c.proxy.path = old.proxy.path.clone();
            c.proxy.max_body_bytes = old.proxy.max_body_bytes;
            cfg = Arc::new(c);
        }
        if cfg.agents.is_empty()
            && self.inner.generated.is_none()
            && cfg.proxy.auth == crate::config::AuthMode::Required
        {
            tracing::warn!("no agents are named any more and no token was generated at start: restart to get one");
        }
        *self.inner.auth.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Authenticator::new(&cfg, self.inner.generated.as_deref()));
        self.inner.shared.apply(&cfg);
        *self.inner.cfg.write().unwrap_or_else(|p| p.into_inner()) = cfg.clone();
        let sessions: Vec<(String, Arc<HttpSession>)> = lock(&self.inner.sessions)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, hs) in sessions {
            if !hs.session.reconfigure(cfg.clone(), &self.inner.shared) {
                lock(&self.inner.sessions).remove(&id);
            }
        }
    }

    /// Open sessions (ended ones waiting for the reaper do not count, as in the per-agent
    /// counts).
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions)
            .values()
            .filter(|s| !s.session.is_closed())
            .count()
    }

    fn caller(&self, headers: &HeaderMap, peer: crate::tls::Peer) -> Result<Caller, Response> {
        let auth = self
            .inner
            .auth
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let result = auth.authenticate_peer(headers, peer.client_cert.as_deref());
        // A wrong credential is a failure (a missing one is not a guess); see Throttle for
        // why a right one is never refused.
        if let Err(AuthError::Invalid) = result {
            let credential = crate::identity::presented(headers);
            if let Some(wait) = self.inner.throttle.failure(peer.addr.ip(), credential) {
                tracing::debug!(peer = %peer.addr.ip(), "request refused: too many failed authentication attempts");
                let mut r = jsonrpc_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    code::INVALID_REQUEST,
                    "Too many failed authentication attempts",
                );
                if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return Err(r);
            }
        }
        result.map_err(|e| {
            tracing::warn!(reason = ?e, peer = %peer.addr.ip(), "request refused: authentication failed");
            let challenge = match e {
                AuthError::Missing => r#"Bearer realm="mcp-warden""#,
                AuthError::Invalid => r#"Bearer realm="mcp-warden", error="invalid_token""#,
            };
            let mut r = jsonrpc_error(
                StatusCode::UNAUTHORIZED,
                code::INVALID_REQUEST,
                "Unauthorized",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            r
        })
    }

    /// The caller's session named by the request. Another caller's session is "not found": a
    /// session id alone grants nothing.
    fn session_for(
        &self,
        headers: &HeaderMap,
        caller: Caller,
    ) -> Result<Arc<HttpSession>, Response> {
        let hs = self.session(headers)?;
        if hs.caller != caller {
            tracing::warn!("request refused: session used with another caller's credential");
            return Err(jsonrpc_error(
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                "Session not found",
            ));
        }
        Ok(hs)
    }

    fn session(&self, headers: &HeaderMap) -> Result<Arc<HttpSession>, Response> {
        let Some(sid) = headers.get(HEADER_SESSION_ID).and_then(|v| v.to_str().ok()) else {
            return Err(jsonrpc_error(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required",
            ));
        };
        match lock(&self.inner.sessions).get(sid) {
            Some(s) if !s.session.is_closed() => Ok(s.clone()),
            _ => Err(jsonrpc_error(
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                "Session not found",
            )),
        }
    }

    /// Closes sessions idle for longer than the configured TTL.
    fn reap(&self) {
        let ttl = self.cfg().proxy.session_idle_timeout;
        let expired: Vec<(String, Arc<HttpSession>)> = {
            let mut map = lock(&self.inner.sessions);
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, s)| {
                    s.session.is_closed()
                        || (s.session.idle_for() > ttl && lock(&s.outbox).rx.is_some())
                })
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter()
                .filter_map(|k| map.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (id, s) in expired {
            tracing::info!(session = %id, "idle session reaped");
            s.session.close();
        }
    }

    /// Probes every enabled `required` upstream with a full handshake (then closes it): at
    /// start, every 2 s while one is not up, every 30 s once all are. Follows reloads.
    async fn probe_required(&self) {
        loop {
            let cfg = self.cfg();
            let wanted: Vec<_> = cfg
                .upstreams
                .iter()
                .filter(|u| u.required && u.enabled)
                .cloned()
                .collect();
            // All at once: readiness waits for the slowest upstream, not for their sum.
            let probes = wanted.iter().map(|u| async {
                let hs = crate::upstream::Handshake::own("mcp-warden-probe");
                let events: crate::upstream::EventHandler = Arc::new(|_| {});
                let r =
                    crate::upstream::Connection::connect(u, &hs, cfg.proxy.max_line_bytes, events)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::warn!(upstream = %u.name, error = %e, "required upstream is not up");
                }
                (u.name.clone(), r)
            });
            let results: std::collections::BTreeMap<_, _> = futures_util::future::join_all(probes)
                .await
                .into_iter()
                .collect();
            let all_up = results.values().all(|r| r.is_ok());
            *lock(&self.inner.required) = results;
            let wait = if all_up { 30 } else { 2 };
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }

    fn close_all(&self) {
        let all: Vec<_> = lock(&self.inner.sessions).drain().collect();
        for (_, s) in all {
            s.session.close();
        }
        self.inner.shared.close();
    }
}

/// The HTTP service of one connection. The MCP endpoint and the health and metrics routes are
/// dispatched here directly (the hot path: no router, no boxed middleware, a handful of
/// allocations per request); everything else (`/control`, `/approvals`, 404) goes to an axum
/// router. Every response, refusals included, carries the security headers, and `Host` and
/// `Origin` are checked before anything else.
#[derive(Clone)]
struct Service {
    front: Front,
    peer: crate::tls::Peer,
    fallback: Arc<Router>,
}

impl hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for Service {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

    fn call(&self, req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut resp = match guard(&this.front, req.headers()) {
                Some(refusal) => refusal,
                None => this.route(req).await,
            };
            security_headers(resp.headers_mut());
            Ok(resp)
        })
    }
}

impl Service {
    async fn route(self, req: axum::http::Request<hyper::body::Incoming>) -> Response {
        let Service {
            front,
            peer,
            fallback,
        } = self;
        let path = req.uri().path();
        if path == front.inner.path {
            let (parts, body) = req.into_parts();
            return match parts.method {
                axum::http::Method::POST => {
                    let body = match read_body(body, front.inner.max_body).await {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    post(State(front), ConnectInfo(peer), parts.headers, body).await
                }
                axum::http::Method::GET => {
                    get(State(front), ConnectInfo(peer), parts.headers).await
                }
                axum::http::Method::DELETE => {
                    delete(State(front), ConnectInfo(peer), parts.headers).await
                }
                _ => method_not_allowed("GET, POST, DELETE"),
            };
        }
        let plain_get = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        match path {
            "/healthz" | "/readyz" | "/metrics" if !plain_get => method_not_allowed("GET, HEAD"),
            "/healthz" => "ok\n".into_response(),
            "/readyz" => readyz(State(front)).await,
            "/metrics" => metrics(State(front)).await,
            _ => {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                match tower::ServiceExt::oneshot((*fallback).clone(), req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = jsonrpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        code::INVALID_REQUEST,
        "Method not allowed",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The request body, up to `limit` bytes (413 beyond: announced or actual).
async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, Response> {
    use http_body_util::BodyExt;
    use hyper::body::Body as _;
    let too_large = || {
        jsonrpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            &format!("Payload Too Large: the body limit is {limit} bytes"),
        )
    };
    // A Content-Length over the limit is refused before anything is read.
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => {
            let f = crate::error::Failure::UnreadableBody;
            tracing::warn!(error = %e, "{}", f.message());
            Err(jsonrpc_error(
                StatusCode::BAD_REQUEST,
                f.code(),
                &f.message(),
            ))
        }
    }
}

/// What is not the MCP endpoint or a health route: the approval console and control API (if
/// approvals are configured), otherwise 404.
fn fallback_router(front: &Front) -> Router {
    let limit = front.inner.max_body;
    let mut app = Router::new();
    // Remote operators decide approvals here (operator tokens; the local token only from
    // loopback). Behind the same Host/Origin checks and security headers as everything else.
    if let Some(broker) = front.inner.shared.broker.clone() {
        let dir = front.cfg().state_dir();
        match crate::approval::control::http_routes(
            &dir,
            broker,
            front.inner.shared.operators.clone(),
        ) {
            Ok(ctl) => app = app.merge(ctl),
            Err(e) => tracing::error!(error = %e, "no /control endpoint"),
        }
    }
    app.fallback(|| async {
        jsonrpc_error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "Not found")
    })
    .layer(DefaultBodyLimit::max(limit))
}

fn security_headers(h: &mut HeaderMap) {
    use axum::http::HeaderName;
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Whether `host` (a Host header value or an authority, any case, with or without a port)
/// names the loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, _)) => return inner == "::1",
            None => return false,
        },
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
}

/// DNS-rebinding defence: `Host` must name this server, and a browser `Origin`, if any, must be
/// loopback or explicitly allowed. Runs before any other processing (403 otherwise).
fn guard(front: &Front, headers: &HeaderMap) -> Option<Response> {
    let cfg = front.cfg();
    let p = &cfg.proxy;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host_ok = (front.inner.local_addr.ip().is_loopback() && is_loopback_host(host))
        || p.allowed_hosts.iter().any(|h| h == "*")
        || {
            let lower = host.to_ascii_lowercase();
            let bare = lower
                .rsplit_once(':')
                .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                .map_or(lower.as_str(), |(h, _)| h);
            p.allowed_hosts.iter().any(|a| *a == lower || a == bare)
        };
    if !host_ok {
        tracing::warn!("request refused: Host header not allowed");
        return Some(jsonrpc_error(
            StatusCode::FORBIDDEN,
            code::INVALID_REQUEST,
            "Forbidden: Host not allowed",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin
            .to_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
        let ok = p.allowed_origins.iter().any(|o| o == "*" || *o == origin)
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && is_loopback_host(authority));
        if !ok {
            tracing::warn!("request refused: Origin not allowed");
            return Some(jsonrpc_error(
                StatusCode::FORBIDDEN,
                code::INVALID_REQUEST,
                "Forbidden: Origin not allowed",
            ));
        }
    }
    None
}

fn accepts(headers: &HeaderMap, want: &str) -> bool {
    let (kind, _) = want.split_once('/').unwrap_or((want, ""));
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let media = item
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media == want || media == "*/*" || media == format!("{kind}/*")
        })
}

fn version_error(headers: &HeaderMap) -> Option<Response> {
    let v = headers.get(HEADER_PROTOCOL_VERSION)?;
    match v.to_str() {
        Ok(v) if mcp::is_supported(v) => None,
        _ => Some(jsonrpc_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: unsupported MCP-Protocol-Version",
        )),
    }
}

async fn post(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match front.caller(&headers, peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return jsonrpc_error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: Accept must include application/json and text/event-stream",
        );
    }
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !ct_ok {
        return jsonrpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let payload = match jsonrpc::parse_payload(body) {
        Ok(p) => p,
        Err(e) => {
            let msg = e.answer();
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                msg.into_bytes(),
            )
                .into_response();
        }
    };
    if let Payload::Single(msg) = &payload {
        if msg.kind() == Kind::Request && msg.method() == Some("initialize") {
            return initialize(&front, msg, caller).await;
        }
    }
    let hs = match front.session_for(&headers, caller) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = version_error(&headers) {
        return r;
    }
    match payload {
        Payload::Single(msg) => {
            if msg.kind() != Kind::Request {
                hs.session.handle(msg, general_sink(&hs));
                return StatusCode::ACCEPTED.into_response();
            }
            let want = msg.id_str().unwrap_or("null").to_string();
            let (tx, rx) = mpsc::channel::<Message>(64);
            hs.session.handle(msg, tx);
            // Priming events (SEP-1699) are for clients that speak 2025-11-25 on this request.
            let version = headers
                .get(HEADER_PROTOCOL_VERSION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(mcp::DEFAULT_HTTP_VERSION);
            let prime = version >= "2025-11-25";
            let cfg = front.cfg();
            match cfg.proxy.response_mode {
                ResponseMode::Json => respond_json(rx, want, general_sink(&hs)).await,
                ResponseMode::Sse => {
                    respond_sse(&front, rx, vec![want], prime, None, general_sink(&hs))
                }
                ResponseMode::Auto => {
                    let general = general_sink(&hs);
                    respond_auto(&front, rx, want, prime, cfg.proxy.stream_after, general).await
                }
            }
        }
        Payload::Batch(items) => {
            if !mcp::allows_batches(hs.session.protocol_version) {
                return jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_REQUEST,
                    "JSON-RPC batches are not supported by the negotiated protocol version",
                );
            }
            let (tx, mut rx) = mpsc::channel::<Message>(64);
            let mut answers = vec![];
            let mut waiting = 0usize;
            for item in items {
                match item {
                    Err(e) => answers.push(e.answer()),
                    Ok(m) => {
                        if m.kind() == Kind::Request {
                            waiting += 1;
                            hs.session.handle(m, tx.clone());
                        } else {
                            hs.session.handle(m, general_sink(&hs));
                        }
                    }
                }
            }
            drop(tx);
            if waiting == 0 && answers.is_empty() {
                return StatusCode::ACCEPTED.into_response();
            }
            let general = general_sink(&hs);
            while waiting > 0 {
                let Some(m) = rx.recv().await else { break };
                if m.kind() == Kind::Response {
                    answers.push(m);
                    waiting -= 1;
                } else {
                    let _ = general.try_send(m);
                }
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                jsonrpc::batch_array(&answers),
            )
                .into_response()
        }
    }
}

/// Readiness for orchestrators: 503 until every `required` upstream has completed a handshake
/// (and whenever its last probe failed); warnings name unsafe settings in force.
async fn readyz(State(front): State<Front>) -> Response {
    let cfg = front.cfg();
    let mut warnings = vec![];
    if cfg.proxy.insecure_remote {
        warnings
            .push("listening beyond loopback without TLS (--dangerously-allow-insecure-remote)");
    }
    let probed = lock(&front.inner.required).clone();
    let mut upstreams = serde_json::Map::new();
    let mut ready = true;
    for u in cfg.upstreams.iter().filter(|u| u.required && u.enabled) {
        let state = match probed.get(&u.name) {
            Some(Ok(())) => serde_json::json!({"up": true}),
            Some(Err(e)) => serde_json::json!({"up": false, "error": e}),
            None => serde_json::json!({"up": false, "error": "not probed yet"}),
        };
        ready &= state["up"] == true;
        upstreams.insert(u.name.clone(), state);
    }
    let body = serde_json::json!({
        "ready": ready,
        "sessions": front.session_count(),
        "required": upstreams,
        "warnings": warnings,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Prometheus metrics (text format 0.0.4). Unauthenticated like the health endpoints; it names
/// upstreams and agents but carries no arguments, tokens or results.
async fn metrics(State(front): State<Front>) -> Response {
    let pending = front
        .inner
        .shared
        .broker
        .as_ref()
        .map_or(0, |b| b.list().len() as u64);
    let text = crate::metrics::METRICS.render(&[
        (
            "mcp_warden_sessions",
            "Open HTTP sessions.",
            front.session_count() as u64,
        ),
        (
            "mcp_warden_approvals_pending",
            "Held calls waiting for a human.",
            pending,
        ),
        (
            "mcp_warden_auth_failures_total",
            "Requests refused for a missing or wrong credential.",
            front
                .inner
                .throttle
                .failures_total
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
    ]);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn general_sink(hs: &HttpSession) -> mpsc::Sender<Message> {
    hs.session_general.clone()
}

async fn initialize(front: &Front, msg: &Message, caller: Caller) -> Response {
    let max = front.cfg().proxy.max_sessions_per_agent;
    let open = lock(&front.inner.sessions)
        .values()
        .filter(|s| s.caller == caller && !s.session.is_closed())
        .count();
    if open >= max {
        tracing::warn!(caller = ?caller, open, "session refused: too many open sessions for this caller");
        return jsonrpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            code::INVALID_REQUEST,
            &format!("Too many open sessions (at most {max}); end one with DELETE"),
        );
    }
    let Some(sid) = super::new_session_id() else {
        let f = crate::error::Failure::Internal;
        tracing::error!("no randomness from the operating system for a session id");
        return jsonrpc_error(StatusCode::INTERNAL_SERVER_ERROR, f.code(), &f.message());
    };
    let (general_tx, general_rx) = mpsc::channel::<Message>(REPLAY);
    let (session, reply) = Session::initialize(
        sid.clone(),
        front.cfg(),
        caller.clone(),
        &front.inner.shared,
        msg,
        general_tx.clone(),
    )
    .await;
    let hs = Arc::new(HttpSession {
        session,
        caller,
        session_general: general_tx,
        outbox: Arc::new(Mutex::new(Outbox {
            rx: Some(general_rx),
            history: VecDeque::new(),
            next_event: 1,
        })),
    });
    lock(&front.inner.sessions).insert(sid.clone(), hs);
    tracing::info!(session = %sid, "session created");
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        reply.into_bytes(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&sid) {
        resp.headers_mut().insert(HEADER_SESSION_ID, v);
    }
    resp
}

/// Answers a POST with one JSON body; messages related to the request that come before the
/// answer go to the session's GET stream.
async fn respond_json(
    mut rx: mpsc::Receiver<Message>,
    want: String,
    general: mpsc::Sender<Message>,
) -> Response {
    let mut want = vec![want];
    while let Some(b) = rx.recv().await {
        if is_answer(&b, &mut want) {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                b.into_bytes(),
            )
                .into_response();
        }
        let _ = general.try_send(b);
    }
    jsonrpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        code::INTERNAL_ERROR,
        "Request cancelled",
    )
}

/// `auto` mode: the answer alone, as one JSON body, if it is ready within `stream_after` and
/// nothing related (progress, logging, a server→client request) comes before it; an SSE stream
/// otherwise, so that slow calls carry their progress as they go. Quick calls, the
/// great majority, cost one write instead of a chunked stream.
async fn respond_auto(
    front: &Front,
    mut rx: mpsc::Receiver<Message>,
    want: String,
    prime: bool,
    stream_after: Duration,
    general: mpsc::Sender<Message>,
) -> Response {
    match tokio::time::timeout(stream_after, rx.recv()).await {
        Ok(Some(b)) if b.kind() == Kind::Response && b.id_str().unwrap_or("null") == want => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b.into_bytes(),
        )
            .into_response(),
        Ok(Some(related)) => respond_sse(front, rx, vec![want], prime, Some(related), general),
        Ok(None) => jsonrpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            code::INTERNAL_ERROR,
            "Request cancelled",
        ),
        Err(_) => respond_sse(front, rx, vec![want], prime, None, general),
    }
}

/// Answers a POST with an SSE stream: every message related to the request (`first`, if one
/// already arrived, then what `rx` brings), ending with its answer. Events carry ids
/// (`p<stream>-<n>`); a 2025-11-25 client first gets a priming event (an id, `retry`, empty
/// data). If the client goes away before the answer, the rest — the answer included — goes to
/// the session's GET stream, where a client that reconnects (SEP-1699) or already listens
/// finds it.
fn respond_sse(
    front: &Front,
    rx: mpsc::Receiver<Message>,
    mut want: Vec<String>,
    prime: bool,
    first: Option<Message>,
    general: mpsc::Sender<Message>,
) -> Response {
    let stream_id = front
        .inner
        .next_stream
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut queued: VecDeque<Bytes> = VecDeque::with_capacity(2);
    if prime {
        queued.push_back(Bytes::from(format!(
            "id: p{stream_id}-0\nretry: 1000\ndata: \n\n"
        )));
    }
    let mut done = false;
    if let Some(m) = first {
        done = is_answer(&m, &mut want) && want.is_empty();
        queued.push_back(Bytes::from(sse::encode(
            Some(&format!("p{stream_id}-1")),
            m.bytes(),
        )));
    }
    let n = queued.len() as u64 + u64::from(!prime);
    let rest = Rest {
        rx: Some(rx),
        want,
        general,
        complete: false,
    };
    let state = (queued, rest, done, n);
    let stream =
        futures_util::stream::unfold(state, move |(mut queued, mut rest, done, n)| async move {
            if let Some(ev) = queued.pop_front() {
                return Some((
                    Ok::<_, std::convert::Infallible>(ev),
                    (queued, rest, done, n),
                ));
            }
            if done {
                rest.finish();
                return None;
            }
            let b = rest.rx.as_mut()?.recv().await?;
            let finished = is_answer(&b, &mut rest.want) && rest.want.is_empty();
            let event = Bytes::from(sse::encode(Some(&format!("p{stream_id}-{n}")), b.bytes()));
            Some((Ok(event), (queued, rest, finished, n + 1)))
        });
    sse_response(Body::from_stream(stream))
}

/// What a POST stream has yet to carry. Dropped before its answer went out (the client
/// disconnected), it hands the rest to the session's general stream.
struct Rest {
    rx: Option<mpsc::Receiver<Message>>,
    want: Vec<String>,
    general: mpsc::Sender<Message>,
    complete: bool,
}

impl Rest {
    /// The answer went out: nothing to hand over.
    fn finish(&mut self) {
        self.complete = true;
    }
}

impl Drop for Rest {
    fn drop(&mut self) {
        if self.complete {
            return;
        }
        let (Some(mut rx), Ok(rt)) = (self.rx.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let general = self.general.clone();
        let mut want = std::mem::take(&mut self.want);
        tracing::debug!("POST stream closed before its answer; the rest goes to the GET stream");
        rt.spawn(async move {
            while let Some(m) = rx.recv().await {
                let last = is_answer(&m, &mut want) && want.is_empty();
                if general.send(m).await.is_err() || last {
                    break;
                }
            }
        });
    }
}

fn is_answer(m: &Message, want: &mut Vec<String>) -> bool {
    if m.kind() != Kind::Response {
        return false;
    }
    let id = m.id_str().unwrap_or("null");
    match want.iter().position(|w| w == id) {
        Some(i) => {
            want.swap_remove(i);
            true
        }
        None => false,
    }
}

fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        axum::http::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    resp
}

/// Puts the GET stream's receiver back into the outbox when the stream ends.
struct Lease {
    outbox: Arc<Mutex<Outbox>>,
    rx: Option<mpsc::Receiver<Message>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            lock(&self.outbox).rx = Some(rx);
        }
    }
}

async fn get(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
) -> Response {
    let caller = match front.caller(&headers, peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !accepts(&headers, "text/event-stream") {
        return jsonrpc_error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: Accept must include text/event-stream",
        );
    }
    let hs = match front.session_for(&headers, caller) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = version_error(&headers) {
        return r;
    }
    let last: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix('g'))
        .and_then(|n| n.parse().ok());
    let (rx, replay) = {
        let mut ob = lock(&hs.outbox);
        let Some(rx) = ob.rx.take() else {
            return jsonrpc_error(
                StatusCode::CONFLICT,
                code::INVALID_REQUEST,
                "Conflict: this session already has an open GET stream",
            );
        };
        let replay: Vec<(u64, Bytes)> = match last {
            Some(n) => ob
                .history
                .iter()
                .filter(|(id, _)| *id > n)
                .cloned()
                .collect(),
            None => vec![],
        };
        (rx, replay)
    };
    let lease = Lease {
        outbox: hs.outbox.clone(),
        rx: Some(rx),
    };
    let stopping = front.inner.stopping.clone();
    let session = hs.session.clone();
    let outbox = hs.outbox.clone();
    let replay: VecDeque<(u64, Bytes)> = replay.into();
    let stream = futures_util::stream::unfold(
        (lease, replay, stopping),
        move |(mut lease, mut replay, mut stopping)| {
            let session = session.clone();
            let outbox = outbox.clone();
            async move {
                if let Some((id, b)) = replay.pop_front() {
                    let ev = Bytes::from(sse::encode(Some(&format!("g{id}")), &b));
                    return Some((
                        Ok::<_, std::convert::Infallible>(ev),
                        (lease, replay, stopping),
                    ));
                }
                if *stopping.borrow() || session.is_closed() {
                    return None;
                }
                let rx = lease.rx.as_mut()?;
                let next = tokio::select! {
                    m = rx.recv() => m.map(Some),
                    _ = tokio::time::sleep(KEEPALIVE) => Some(None),
                    _ = stopping.changed() => None,
                };
                session.touch();
                match next? {
                    Some(b) => {
                        let id = {
                            let mut ob = lock(&outbox);
                            let id = ob.next_event;
                            ob.next_event += 1;
                            ob.history.push_back((id, b.bytes().clone()));
                            if ob.history.len() > REPLAY {
                                ob.history.pop_front();
                            }
                            id
                        };
                        let ev = Bytes::from(sse::encode(Some(&format!("g{id}")), b.bytes()));
                        Some((Ok(ev), (lease, replay, stopping)))
                    }
                    None => Some((
                        Ok(Bytes::from_static(b": keep-alive\n\n")),
                        (lease, replay, stopping),
                    )),
                }
            }
        },
    );
    sse_response(Body::from_stream(stream))
}

async fn delete(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
) -> Response {
    let caller = match front.caller(&headers, peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let hs = match front.session_for(&headers, caller) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sid = hs.session.id.clone();
    lock(&front.inner.sessions).remove(&sid);
    hs.session.close();
    tracing::info!(session = %sid, "session deleted by client");
    StatusCode::OK.into_response()
}

/// The single user's token file in the state directory.
pub const TOKEN_FILE: &str = "http-token";

/// Serves the HTTP front on `listener` until `shutdown` resolves, then stops accepting, lets
/// requests in flight finish (up to the configured grace), and closes every session.
/// In the single-user case with authentication required, the bearer token for this run:
/// generated now, written to `http-token` (0600) in the state directory, printed once on stderr.
pub fn single_user_token(cfg: &Config) -> std::io::Result<Option<String>> {
    if !cfg.agents.is_empty() || cfg.proxy.auth != crate::config::AuthMode::Required {
        return Ok(None);
    }
    let dir = cfg.state_dir();
    // The token file belongs to one instance: a second single-user `serve` on the same state
    // directory would silently replace the first one's token.
    match crate::state::lock_exclusive(&dir, "http-token.lock") {
        Ok(lock) => std::mem::forget(lock), // held for the life of the process
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Err(std::io::Error::other(format!(
                "another single-user mcp-warden serve uses the state directory {}; give this one its own `state_dir`",
                dir.display()
            )))
        }
        Err(e) => return Err(e),
    }
    // `keep_token = true`: the token of an earlier run, if there is a sound one.
    let kept = cfg
        .proxy
        .keep_token
        .then(|| crate::state::read_private(&dir, TOKEN_FILE).ok().flatten())
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| t.len() >= 32 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    let (token, lifetime) = match kept {
        Some(t) => (t, "kept across restarts: keep_token = true"),
        None => {
            let t = crate::identity::generate_token()
                .ok_or_else(|| std::io::Error::other("no randomness for a token"))?;
            let lifetime = if cfg.proxy.keep_token {
                "kept across restarts: keep_token = true"
            } else {
                "for this run only; keep_token = true keeps it"
            };
            (t, lifetime)
        }
    };
    let path = crate::state::write_atomic(&dir, TOKEN_FILE, token.as_bytes())?;
    eprintln!(
        "mcp-warden: no agents are configured; HTTP callers must send `Authorization: Bearer {token}` ({lifetime}; also in {})",
        path.display()
    );
    Ok(Some(token))
}

pub async fn serve(
    cfg: Arc<Config>,
    listener: crate::tls::FrontListener,
    generated: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local_addr = listener.local_addr()?;
    if cfg.proxy.auth == crate::config::AuthMode::None && !local_addr.ip().is_loopback() {
        return Err(std::io::Error::other(
            "`auth = \"none\"` is only allowed on a loopback listener",
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let front = Front {
        inner: Arc::new(Inner {
            cfg: std::sync::RwLock::new(cfg.clone()),
            generated: generated.clone(),
            sessions: Mutex::new(HashMap::new()),
            local_addr,
            path: cfg.proxy.path.clone(),
            max_body: cfg.proxy.max_body_bytes,
            stopping: stop_rx,
            next_stream: std::sync::atomic::AtomicU64::new(1),
            shared: crate::session::Services::new(&cfg),
            throttle: crate::identity::Throttle::default(),
            auth: std::sync::RwLock::new(Arc::new(Authenticator::new(&cfg, generated.as_deref()))),
            required: Mutex::new(Default::default()),
        }),
    };
    let weak = Arc::downgrade(&front.inner);
    crate::metrics::METRICS.count_sessions_with(Box::new(move || {
        let mut per = std::collections::BTreeMap::new();
        if let Some(inner) = weak.upgrade() {
            for s in lock(&inner.sessions)
                .values()
                .filter(|s| !s.session.is_closed())
            {
                let agent = match &s.caller {
                    Caller::Agent(a) => a.to_string(),
                    Caller::User => "user".to_string(),
                };
                *per.entry(agent).or_insert(0) += 1;
            }
        }
        per
    }));
    let probe_front = front.clone();
    let _prober = crate::task::spawn(tracing::info_span!("readiness-probe"), async move {
        probe_front.probe_required().await
    });
    let _reloader = cfg.source.clone().map(|path| {
        let f = front.clone();
        crate::task::spawn(
            tracing::info_span!("config-reload"),
            crate::reload::watch(path, move |c| f.apply(c)),
        )
    });
    let reaper_front = front.clone();
    let tick = (cfg.proxy.session_idle_timeout / 4)
        .clamp(Duration::from_millis(200), Duration::from_secs(30));
    let _reaper = crate::task::spawn(tracing::info_span!("session-reaper"), async move {
        let mut iv = tokio::time::interval(tick);
        loop {
            iv.tick().await;
            reaper_front.reap();
        }
    });
    tracing::info!(addr = %local_addr, path = %cfg.proxy.path, "serving MCP over Streamable HTTP");
    let fallback = Arc::new(fallback_router(&front));
    let grace = cfg.proxy.shutdown_grace;
    // Our own accept loop (rather than `axum::serve`) so that HTTP/1 gets a header-read
    // deadline: a client that trickles its headers (slowloris) is cut off instead of holding a
    // connection forever.
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .http1_only();
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(cfg.proxy.header_read_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut listener = listener;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            (io, peer) = axum::serve::Listener::accept(&mut listener) => {
                // Each request learns who is on the other end (address, client certificate).
                let svc = Service { front: front.clone(), peer, fallback: fallback.clone() };
                let conn = builder.serve_connection_with_upgrades(
                    hyper_util::rt::TokioIo::new(io),
                    svc,
                );
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    let _ = stop_tx.send(true);
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
    front.close_all();
    front.inner.shared.flush().await;
    crate::upstream::wait_for_children(Duration::from_secs(5)).await;
    Ok(())
}
