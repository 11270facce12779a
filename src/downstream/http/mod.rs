//! The Streamable HTTP front (MCP 2025-11-25 transport rules; older clients too).
//!
//! POST carries messages: a request is answered with JSON when its answer is the first thing
//! ready, or with an SSE stream when related messages (progress, sampling, logging) come first;
//! notifications and responses get 202. `initialize` creates a session with a random
//! `Mcp-Session-Id`; other requests need it (400 without, 404 when unknown, expired or deleted).
//! GET opens the session's stream for messages not tied to a request, resumable with
//! `Last-Event-ID`. DELETE ends the session and its upstreams. Every response carries security
//! headers; `Host` and `Origin` are checked against DNS rebinding before anything else.
//!
//! Here: the front itself (its state, reloads, authentication of a request, start-up and
//! shutdown). Beside it: `service` (the connection service and guard), `endpoint` (POST, GET,
//! DELETE), `respond` (JSON or SSE answers), `registry` (sessions by id, the reaper),
//! `health` (`/readyz`, `/metrics`).

mod endpoint;
mod health;
mod modern;
mod registry;
mod respond;
mod service;

use endpoint::{delete, get, post};
use health::{metrics, readyz};
use respond::{respond_auto, respond_json, respond_sse, sse_response};
use service::{accepts, fallback_router, version_error, Service};

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
    shared: crate::instance::Instance,
    /// Internal sessions serving 2026-07-28 (stateless) requests, one per caller.
    stateless: crate::downstream::modern::Stateless,
    auth: std::sync::RwLock<Arc<Authenticator>>,
    throttle: crate::identity::Throttle,
    /// Last probe of each `required` upstream: `Err` says why it is not up (`/readyz`).
    required: Mutex<std::collections::BTreeMap<String, Result<(), String>>>,
}

/// A whole HTTP request refused by a [`crate::error::Failure`]: its status, code and fixed
/// message; `detail` is logged.
fn failure_response(f: &crate::error::Failure, detail: &dyn std::fmt::Display) -> Response {
    let body = f.answer(None, detail).into_bytes();
    (
        f.http_status(),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
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
        let previous = crate::util::read(&self.inner.auth).clone();
        *crate::util::write(&self.inner.auth) = Arc::new(Authenticator::new(
            &cfg,
            self.inner.generated.as_deref(),
            Some(&previous),
        ));
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
        self.inner.stateless.reconfigure(&cfg, &self.inner.shared);
    }

    async fn caller(
        &self,
        headers: &HeaderMap,
        peer: crate::tls::Peer,
    ) -> Result<(Caller, Option<crate::identity::SubjectToken>), Response> {
        let auth = crate::util::read(&self.inner.auth).clone();
        let result = auth
            .authenticate_peer(headers, peer.client_cert.as_deref())
            .await;
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
            challenge(&e, auth.oidc().map(|v| &**v.settings()))
        })
    }
}

/// The refusal of a request whose credential does not do (RFC 6750 §3; with `[auth.oidc]`,
/// the MCP authorization challenges: where the protected resource metadata is, and the scope
/// to ask for or step up to).
fn challenge(e: &AuthError, oidc: Option<&crate::config::OidcSettings>) -> Response {
    let mut value = String::from(r#"Bearer realm="mcp-warden""#);
    let (status, message) = match e {
        AuthError::Missing => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        AuthError::Invalid => {
            value.push_str(r#", error="invalid_token""#);
            (StatusCode::UNAUTHORIZED, "Unauthorized")
        }
        AuthError::InsufficientScope(_) => {
            value.push_str(r#", error="insufficient_scope""#);
            (
                StatusCode::FORBIDDEN,
                "Forbidden: the access token lacks a scope this agent needs",
            )
        }
        AuthError::NoAgent => (
            StatusCode::FORBIDDEN,
            "Forbidden: this identity is not an agent of this endpoint",
        ),
    };
    if let Some(o) = oidc {
        let scope = match e {
            AuthError::InsufficientScope(s) => s.clone(),
            _ => o.scopes.join(" "),
        };
        value.push_str(&format!(
            r#", resource_metadata="{}""#,
            crate::oidc::metadata_url(&o.resource)
        ));
        if !scope.is_empty() {
            value.push_str(&format!(r#", scope="{scope}""#));
        }
    }
    let mut r = jsonrpc_error(status, code::INVALID_REQUEST, message);
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
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
            shared: crate::instance::Instance::serve(&cfg),
            stateless: Default::default(),
            throttle: crate::identity::Throttle::default(),
            auth: std::sync::RwLock::new(Arc::new(Authenticator::new(
                &cfg,
                generated.as_deref(),
                None,
            ))),
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
                let agent = match s.caller.agent() {
                    Some(a) => a.to_string(),
                    None => "user".to_string(),
                };
                *per.entry(agent).or_insert(0) += 1;
            }
        }
        per.into_iter().collect()
    }));
    // The identity provider's keys, fetched before the first caller needs them.
    let verifier = crate::util::read(&front.inner.auth).oidc().cloned();
    let _keys = verifier.map(|v| {
        crate::task::spawn(
            tracing::info_span!("oidc-keys"),
            async move { v.warm().await },
        )
    });
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
