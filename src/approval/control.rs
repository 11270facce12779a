//! The control API approval channels use: JSON-RPC 2.0 over HTTP on a Unix domain socket in the
//! state directory (`control-<pid>.sock`, mode 0600; one per running instance, so instances
//! sharing a state directory never share a socket).
//!
//! Local clients (the CLI, another container sharing the state volume) authenticate with a token
//! *derived* from the secret file `approval-secret` — HMAC-SHA256(secret, "approval-runtime") —
//! never the secret itself. The secret file is created once with `O_EXCL`, mode 0600, never
//! overwritten and never read through a symlink.
//!
//! Methods: `approvals.list`, `approvals.show {id}`, `approvals.decide {id, decision, operator?}`, `grants.list`,
//! `grants.revoke {id}`. `GET /events` streams approval events (SSE).

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::Mac;
use subtle::ConstantTimeEq;

use super::{Broker, Decision};

pub const SECRET_FILE: &str = "approval-secret";
pub const PURPOSE: &str = "approval-runtime";

/// Reads the secret, creating it (O_EXCL, 0600) if it does not exist yet.
pub fn secret(dir: &Path) -> std::io::Result<Vec<u8>> {
    crate::state::create_secret(dir, SECRET_FILE)?;
    existing_secret(dir)?.ok_or_else(|| std::io::Error::other("the approval secret vanished"))
}

/// Reads the secret if there is one; never creates it.
pub fn existing_secret(dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let path = dir.join(SECRET_FILE);
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut s = Vec::new();
    f.read_to_end(&mut s)?;
    if s.len() < 32 {
        return Err(std::io::Error::other("the approval secret is too short"));
    }
    Ok(Some(s))
}

/// The token a local client presents: HMAC-SHA256(secret, purpose), hex.
pub fn derive_token(secret: &[u8], purpose: &str) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(purpose.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Operator credentials for the remote control endpoint: (digest, operator name).
pub type Operators = Arc<std::sync::RwLock<Vec<(crate::config::TokenDigest, String)>>>;

pub fn operators_of(cfg: &crate::config::Config) -> Vec<(crate::config::TokenDigest, String)> {
    cfg.operators
        .iter()
        .flat_map(|o| o.tokens.iter().map(move |t| (t.clone(), o.name.clone())))
        .collect()
}

#[derive(Clone)]
pub(super) struct Ctl {
    pub(super) broker: Arc<Broker>,
    /// The local token (derived from the secret file).
    token: String,
    operators: Operators,
    /// Signed-in operators of the approvals page.
    web: Arc<WebSessions>,
    /// Throttling of failed sign-ins and control requests from the network.
    throttle: Arc<crate::identity::Throttle>,
    /// The running config (the HTTP front's), for upstream sign-ins from the page.
    pub(super) cfg: Option<ConfigSource>,
    /// Sign-ins under way in browsers, by the `state` of the step they are at.
    signins: Arc<std::sync::Mutex<std::collections::HashMap<String, SignInFlow>>>,
}

/// The running config, as the front has it now (reloads included).
pub type ConfigSource = Arc<dyn Fn() -> Arc<crate::config::Config> + Send + Sync>;

/// A sign-in under way in a browser: an operator's, started from the page, or a person's,
/// started from the link their agent was given. Each step ends with a redirect to
/// `/oauth/callback`, in the same browser (its flow cookie).
pub(super) struct SignInFlow {
    pub(super) stage: Stage,
    pub(super) cookie: String,
    started: std::time::Instant,
    /// Who signs in (an operator's name, or `person`), for the log.
    pub(super) by: String,
    /// The upstream (and agent), as the pages and the log name it.
    pub(super) what: String,
    /// A person's sign-in: the handle of their link. One flow per link: a new one (the link
    /// opened again) replaces the last, so that nobody fills the table from one link.
    pub(super) link: Option<String>,
}

/// Where a browser sign-in is.
pub(super) enum Stage {
    /// At the upstream's authorization server; for a person (`iss sub`), once proven.
    Upstream {
        pending: crate::upstream::oauth_login::Pending,
        person: Option<String>,
    },
    /// At the identity provider: the person proves who they are before the upstream's step.
    Person {
        link: super::connect::Link,
        pending: crate::oidc_login::Pending,
    },
}

impl Ctl {
    /// Records a browser sign-in's next step under its `state`; `Err`: too many under way.
    pub(super) fn begin_flow(&self, state: String, flow: SignInFlow) -> Result<(), TooManyFlows> {
        let mut flows = crate::util::lock(&self.signins);
        flows.retain(|_, f| {
            f.started.elapsed() < crate::upstream::oauth_login::WAIT
                && (f.link.is_none() || f.link != flow.link)
        });
        if flows.len() >= MAX_FLOWS {
            return Err(TooManyFlows);
        }
        flows.insert(state, flow);
        Ok(())
    }
}

/// [`MAX_FLOWS`] sign-ins are under way.
pub(super) struct TooManyFlows;

impl IntoResponse for TooManyFlows {
    fn into_response(self) -> Response {
        (
            StatusCode::TOO_MANY_REQUESTS,
            "too many sign-ins under way; finish or wait for one",
        )
            .into_response()
    }
}

impl SignInFlow {
    pub(super) fn new(
        stage: Stage,
        cookie: String,
        by: String,
        what: String,
        link: Option<String>,
    ) -> SignInFlow {
        SignInFlow {
            stage,
            cookie,
            started: std::time::Instant::now(),
            by,
            what,
            link,
        }
    }
}

/// The flow cookie that binds a browser sign-in's redirects to the browser that started it.
pub(super) fn flow_cookie(origin: &str, cookie: &str) -> Option<header::HeaderValue> {
    let secure = if origin.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    header::HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={cookie}; HttpOnly; SameSite=Lax; Path=/oauth/; Max-Age={}{secure}",
        crate::upstream::oauth_login::WAIT.as_secs()
    ))
    .ok()
}

const FLOW_COOKIE: &str = "mw_flow";
/// At most this many sign-ins wait for their browser at once (operators' and people's; a
/// person's link holds one at a time).
const MAX_FLOWS: usize = 256;

/// Web sessions of the approvals page: an HttpOnly, SameSite=Strict cookie names the session;
/// state-changing requests must also carry its CSRF token in a header (which a cross-site form
/// cannot set).
#[derive(Default)]
pub struct WebSessions {
    map: std::sync::Mutex<std::collections::HashMap<String, (String, String, std::time::Instant)>>,
}

const WEB_COOKIE: &str = "mw_op";
const WEB_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

impl WebSessions {
    fn create(&self, operator: &str) -> (String, String) {
        let (sid, csrf) = (super::random_id(24), super::random_id(24));
        let mut m = crate::util::lock(&self.map);
        m.retain(|_, (_, _, t)| t.elapsed() < WEB_TTL);
        m.insert(
            sid.clone(),
            (
                operator.to_string(),
                csrf.clone(),
                std::time::Instant::now(),
            ),
        );
        (sid, csrf)
    }

    /// Ends the session named by the request's cookie if `csrf` is its token.
    fn remove(&self, headers: &HeaderMap, csrf: &str) -> bool {
        let Some(sid) = Self::sid(headers) else {
            return false;
        };
        let mut m = crate::util::lock(&self.map);
        let matches = m
            .get(&sid)
            .is_some_and(|(_, c, _)| bool::from(c.as_bytes().ct_eq(csrf.as_bytes())));
        if matches {
            m.remove(&sid);
        }
        matches
    }

    fn sid(headers: &HeaderMap) -> Option<String> {
        cookie_value(headers, WEB_COOKIE)
    }

    /// (operator, csrf) of the session named by the request's cookie.
    fn get(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let sid = Self::sid(headers)?;
        let m = crate::util::lock(&self.map);
        let (op, csrf, t) = m.get(&sid)?;
        (t.elapsed() < WEB_TTL).then(|| (op.clone(), csrf.clone()))
    }
}

fn operator_by_token(ctl: &Ctl, token: &str) -> Option<String> {
    let digest = crate::config::TokenDigest::of(token);
    let mut who = None;
    for (d, name) in ctl
        .operators
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        if bool::from(d.0.ct_eq(&digest.0)) {
            who = Some(name.clone());
        }
    }
    who
}

/// Who is deciding, or `None`. An operator token works from anywhere; the local token only on
/// the Unix socket (`peer` is `None`) or from a loopback address — a request arriving from the
/// network never gets the local authority.
fn authorize(ctl: &Ctl, headers: &HeaderMap, peer: Option<std::net::SocketAddr>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = bearer else {
        // The approvals page (HTTP only): its session cookie; state-changing requests must also
        // carry the session's CSRF token, which the caller checks.
        return peer
            .and(ctl.web.get(headers))
            .map(|(op, _)| format!("operator:{op}"));
    };
    let mut who = operator_by_token(ctl, given).map(|n| format!("operator:{n}"));
    let local_ok = peer.is_none_or(|p| p.ip().is_loopback());
    if who.is_none()
        && local_ok
        && !ctl.token.is_empty()
        && bool::from(given.as_bytes().ct_eq(ctl.token.as_bytes()))
    {
        who = Some("local".into());
    }
    who
}

/// Who makes a state-changing request: an operator (token, or the page's cookie with its
/// CSRF token, which a cross-site form or fetch cannot set) or the local client. Failures are
/// throttled per address; a right credential never is (see Throttle).
fn operator(
    ctl: &Ctl,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> Result<String, (StatusCode, &'static str)> {
    let Some(who) = authorize(ctl, headers, peer) else {
        if let Some(ip) = peer.map(|p| p.ip()) {
            let credential = crate::identity::presented(headers);
            if ctl.throttle.failure(ip, credential).is_some() {
                return Err((StatusCode::TOO_MANY_REQUESTS, "too many failed attempts"));
            }
        }
        tracing::warn!(peer = ?peer, "control API: request refused (no valid operator or local token)");
        return Err((StatusCode::UNAUTHORIZED, "unauthorized"));
    };
    if headers.get(header::AUTHORIZATION).is_none() {
        let expected = ctl.web.get(headers).map(|(_, c)| c).unwrap_or_default();
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            tracing::warn!(peer = ?peer, "control API: request refused (missing or wrong CSRF token)");
            return Err((StatusCode::FORBIDDEN, "forbidden"));
        }
    }
    Ok(who)
}

fn json(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn rpc_result(id: &serde_json::Value, result: serde_json::Value) -> Response {
    json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn rpc_error(id: &serde_json::Value, code: i64, message: &str) -> Response {
    json(
        serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    )
}

async fn rpc_local(
    State(ctl): State<Ctl>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    rpc(ctl, headers, None, body).await
}

async fn rpc_remote(
    State(ctl): State<Ctl>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    rpc(ctl, headers, Some(peer.addr), body).await
}

async fn rpc(
    ctl: Ctl,
    headers: HeaderMap,
    peer: Option<std::net::SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let who = match operator(&ctl, &headers, peer) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let Ok(req) = serde_json::from_slice::<ControlRequest<'_>>(&body) else {
        return rpc_error(
            &serde_json::Value::Null,
            -32700,
            "Parse error: a JSON-RPC request object was expected",
        );
    };
    let id = req.id;
    let call = match Call::of(req.method, req.params) {
        Ok(c) => c,
        Err(Bad::Method) => return rpc_error(&id, -32601, "Method not found"),
        Err(Bad::Params(e)) => return rpc_error(&id, -32602, &format!("Invalid params: {e}")),
    };
    match call {
        Call::ApprovalsList => match ctl.broker.list().await {
            Ok(list) => rpc_result(&id, serde_json::json!(list)),
            Err(e) => rpc_error(&id, -32603, &format!("approvals cannot be read: {e}")),
        },
        Call::Status => {
            let mut s = crate::metrics::METRICS.summary();
            s["pending_approvals"] = ctl.broker.list().await.map_or(0, |l| l.len()).into();
            s["held_here"] = ctl.broker.held().into();
            s["grants"] = ctl.broker.grants().await.len().into();
            if let Some(f) = ctl.broker.fleet() {
                s["replica"] = f.replica().into();
                s["fleet"] = match f.replicas().await {
                    Ok(r) => r.into(),
                    Err(e) => serde_json::json!({"error": e}),
                };
            }
            rpc_result(&id, s)
        }
        Call::Decide(p) => {
            // The authenticated identity decides; a local client may add whom it acts for.
            let operator = match (who.as_str(), p.operator) {
                ("local", Some(name)) => format!("local:{name}"),
                (w, _) => w.to_string(),
            };
            let channel = if peer.is_some() { "http" } else { "socket" };
            match ctl
                .broker
                .decide(&p.id, p.decision, channel, &operator)
                .await
            {
                Ok(info) => rpc_result(
                    &id,
                    serde_json::json!({"decided": info, "decision": p.decision}),
                ),
                Err(e) => rpc_error(&id, -32602, &e),
            }
        }
        Call::ApprovalsShow(p) => match ctl
            .broker
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.id == p.id)
        {
            Some(a) => rpc_result(&id, serde_json::json!(a)),
            None => rpc_error(&id, -32602, &format!("no pending approval `{}`", p.id)),
        },
        Call::GrantsList => rpc_result(&id, serde_json::json!(ctl.broker.grants().await)),
        Call::GrantsRevoke(p) => {
            if ctl.broker.revoke(&p.id).await {
                rpc_result(&id, serde_json::json!({"revoked": p.id}))
            } else {
                rpc_error(&id, -32602, &format!("no grant `{}`", p.id))
            }
        }
    }
}

/// A control-API request as received (JSON-RPC 2.0 shape; `params` decoded per method).
#[derive(serde::Deserialize)]
struct ControlRequest<'a> {
    #[serde(default)]
    id: serde_json::Value,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<&'a serde_json::value::RawValue>,
}

/// The control API's methods, each with its typed parameters.
enum Call {
    ApprovalsList,
    ApprovalsShow(ById),
    Decide(DecideParams),
    GrantsList,
    GrantsRevoke(ById),
    Status,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ById {
    id: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideParams {
    id: String,
    decision: Decision,
    /// Whom a local client acts for (ignored for remote operators: their credential names them).
    #[serde(default)]
    operator: Option<String>,
}

enum Bad {
    Method,
    Params(serde_json::Error),
}

impl Call {
    fn of(
        method: std::borrow::Cow<'_, str>,
        params: Option<&serde_json::value::RawValue>,
    ) -> Result<Call, Bad> {
        fn typed<T: serde::de::DeserializeOwned>(
            params: Option<&serde_json::value::RawValue>,
        ) -> Result<T, Bad> {
            serde_json::from_str(params.map_or("{}", |p| p.get())).map_err(Bad::Params)
        }
        Ok(match method.as_ref() {
            "approvals.list" => Call::ApprovalsList,
            "approvals.show" => Call::ApprovalsShow(typed(params)?),
            "approvals.decide" => Call::Decide(typed(params)?),
            "grants.list" => Call::GrantsList,
            "grants.revoke" => Call::GrantsRevoke(typed(params)?),
            "status" => Call::Status,
            _ => return Err(Bad::Method),
        })
    }
}

async fn events_local(State(ctl): State<Ctl>, headers: HeaderMap) -> Response {
    events(ctl, headers, None)
}

async fn events_remote(
    State(ctl): State<Ctl>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
) -> Response {
    events(ctl, headers, Some(peer.addr))
}

fn events(ctl: Ctl, headers: HeaderMap, peer: Option<std::net::SocketAddr>) -> Response {
    if authorize(&ctl, &headers, peer).is_none() {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let rx = ctl.broker.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    return Some((
                        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(format!(
                            "data: {ev}\n\n"
                        ))),
                        rx,
                    ))
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// The socket path of this instance.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(format!("control-{}.sock", std::process::id()))
}

/// Serves the control API on this instance's socket until the returned task is dropped.
/// The control API on the HTTP listener (`/control`, `/control/events`) for remote operators,
/// and the approvals page (`/approvals`).
pub fn http_routes<S>(
    dir: &Path,
    broker: Arc<Broker>,
    operators: Operators,
    cfg: ConfigSource,
) -> std::io::Result<Router<S>> {
    let token = derive_token(&secret(dir)?, PURPOSE);
    let web = Arc::new(WebSessions::default());
    Ok(Router::new()
        .route("/control", axum::routing::post(rpc_remote))
        .route("/control/events", axum::routing::get(events_remote))
        .route("/approvals", axum::routing::get(page))
        .route("/approvals/app.js", axum::routing::get(page_js))
        .route("/approvals/app.css", axum::routing::get(page_css))
        .route("/approvals/icon.svg", axum::routing::get(page_icon))
        .route("/approvals/login", axum::routing::post(login))
        .route("/approvals/session", axum::routing::get(web_session))
        .route("/approvals/logout", axum::routing::post(logout))
        .route(
            "/approvals/signins",
            axum::routing::get(signins).post(signin_start),
        )
        .route("/oauth/callback", axum::routing::get(signin_finish))
        .route(
            "/oauth/connect/{handle}",
            axum::routing::get(super::connect::open),
        )
        .with_state(Ctl {
            broker,
            token,
            operators,
            web,
            throttle: Arc::default(),
            cfg: Some(cfg),
            signins: Arc::default(),
        }))
}

/// The page's own policy: nothing but its own script, style and API.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML page of mcp-warden's own, under the page's policy.
fn static_page(status: StatusCode, body: String) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(PAGE_CSP),
    );
    r
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(PAGE_CSP),
    );
    r
}

async fn page() -> Response {
    static_file("text/html; charset=utf-8", include_str!("web/index.html"))
}

async fn page_js() -> Response {
    static_file("text/javascript; charset=utf-8", include_str!("web/app.js"))
}

async fn page_css() -> Response {
    static_file("text/css; charset=utf-8", include_str!("web/app.css"))
}

async fn page_icon() -> Response {
    static_file("image/svg+xml", include_str!("web/icon.svg"))
}

async fn login(
    State(ctl): State<Ctl>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::tls::Peer>,
    body: axum::body::Bytes,
) -> Response {
    let peer = peer.addr;
    #[derive(serde::Deserialize)]
    struct Login {
        token: String,
    }
    let login = serde_json::from_slice::<Login>(&body).ok();
    let Some(op) = login
        .as_ref()
        .and_then(|l| operator_by_token(&ctl, &l.token))
    else {
        use sha2::Digest;
        let token = login
            .as_ref()
            .map(|l| l.token.as_bytes())
            .unwrap_or_default();
        if ctl
            .throttle
            .failure(peer.ip(), sha2::Sha256::digest(token).into())
            .is_some()
        {
            return (StatusCode::TOO_MANY_REQUESTS, "too many failed attempts").into_response();
        }
        tracing::warn!(peer = %peer.ip(), "approvals page: sign-in refused");
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    };
    let (sid, csrf) = ctl.web.create(&op);
    let mut r = json(serde_json::json!({"csrf": csrf, "operator": op}));
    let cookie = format!(
        "{WEB_COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        WEB_TTL.as_secs()
    );
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Ends the page's session (its cookie and CSRF token must both match: a cross-site request
/// cannot sign an operator out either).
async fn logout(State(ctl): State<Ctl>, headers: HeaderMap) -> Response {
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctl.web.remove(&headers, given) {
        return (StatusCode::FORBIDDEN, "forbidden").into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static("mw_op=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

async fn web_session(State(ctl): State<Ctl>, headers: HeaderMap) -> Response {
    match ctl.web.get(&headers) {
        Some((op, csrf)) => {
            json(serde_json::json!({"signedIn": true, "csrf": csrf, "operator": op}))
        }
        // Not an error for the page: it shows the sign-in form.
        None => json(serde_json::json!({"signedIn": false})),
    }
}

/// The OAuth upstreams and their sign-ins, as `auth list` shows them (never a token), for
/// operators of the page.
async fn signins(
    State(ctl): State<Ctl>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
) -> Response {
    if authorize(&ctl, &headers, Some(peer.addr)).is_none() {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let Some(cfg) = ctl.cfg.as_ref().map(|c| c()) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let list: Vec<serde_json::Value> = crate::upstream::oauth_login::list(&cfg)
        .into_iter()
        .map(|l| {
            serde_json::json!({
                "upstream": l.upstream,
                "agent": l.agent,
                "signIn": l.sign_in,
                "signedIn": l.signed_in,
                "line": l.line,
            })
        })
        .collect();
    json(serde_json::json!({ "signins": list }))
}

/// An operator starts signing mcp-warden in to an upstream (`{"upstream", "agent"}`): the
/// answer is the authorization server's URL for this browser to open, and a flow cookie that
/// binds the redirect back to it. The redirect is this front's `/oauth/callback`, at the host
/// the page was reached by (`https` when the front serves TLS).
async fn signin_start(
    State(ctl): State<Ctl>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match operator(&ctl, &headers, Some(peer.addr)) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let Some(cfg) = ctl.cfg.as_ref().map(|c| c()) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Start {
        upstream: String,
        #[serde(default)]
        agent: Option<String>,
    }
    let Ok(start) = serde_json::from_slice::<Start>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"upstream\": NAME, \"agent\": NAME}",
        )
            .into_response();
    };
    let Some(origin) = cfg.proxy.origin(&headers) else {
        return (StatusCode::BAD_REQUEST, "no Host").into_response();
    };
    let redirect = format!("{origin}/oauth/callback");
    let agent = start.agent.as_deref();
    let (authorize, pending) = match crate::upstream::oauth_login::start(
        &cfg,
        &start.upstream,
        crate::upstream::oauth_login::For {
            agent,
            person: None,
        },
        &redirect,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(upstream = %start.upstream, "sign-in not started: {e}");
            return (StatusCode::BAD_REQUEST, e).into_response();
        }
    };
    let what = match agent {
        Some(a) => format!("{} (agent {a})", start.upstream),
        None => start.upstream.clone(),
    };
    let cookie = super::random_id(24);
    let state = pending.state.clone();
    let flow = SignInFlow::new(
        Stage::Upstream {
            pending,
            person: None,
        },
        cookie.clone(),
        who.clone(),
        what.clone(),
        None,
    );
    if let Err(r) = ctl.begin_flow(state, flow) {
        return r.into_response();
    }
    tracing::info!(operator = %who, upstream = %what, "sign-in started from the approvals page");
    let mut r = json(serde_json::json!({ "authorize": authorize }));
    if let Some(v) = flow_cookie(&origin, &cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `s` as HTML text or a quoted attribute value.
pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small page of mcp-warden's own (the text escaped, never cached), for the ends of browser
/// sign-ins.
pub(super) fn message_page(status: StatusCode, text: &str) -> Response {
    sign_in_page(status, &format!("<p>{}</p>", html_escape(text)))
}

/// A page of the browser sign-ins, `content` its body (HTML, escaped by the caller), never
/// cached.
pub(super) fn sign_in_page(status: StatusCode, content: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mcp-warden sign-in</title><link rel=\"icon\" href=\"/approvals/icon.svg\" type=\"image/svg+xml\"></head><body>{content}</body></html>"
    );
    let mut r = static_page(status, body);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The redirect back from an authorization server or the identity provider: the flow its
/// `state` names (once), in the browser that started it (its flow cookie). An upstream's
/// answer is checked and its code exchanged ([`crate::upstream::oauth_login::finish`]):
/// sessions waiting for this sign-in use it at their next call. A person's identity step
/// leads on to the upstream's ([`super::connect::person_proved`]).
async fn signin_finish(
    State(ctl): State<Ctl>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let state = crate::upstream::oauth_login::query_param(&query, "state").unwrap_or_default();
    // Only the browser that started the flow ends it (another is refused, and the flow stays
    // for the right one); it is taken out before it is used: a state serves once.
    let given = cookie_value(&headers, FLOW_COOKIE).unwrap_or_default();
    let flow = {
        let mut flows = crate::util::lock(&ctl.signins);
        match flows.get(&state) {
            Some(f) if !bool::from(given.as_bytes().ct_eq(f.cookie.as_bytes())) => {
                tracing::warn!(upstream = %f.what, "sign-in callback refused: not the browser that started it");
                return message_page(
                    StatusCode::FORBIDDEN,
                    "This sign-in was started in another browser: finish it there, or start it again here.",
                );
            }
            _ => flows.remove(&state),
        }
    };
    let Some(flow) = flow.filter(|f| f.started.elapsed() < crate::upstream::oauth_login::WAIT)
    else {
        tracing::warn!("sign-in callback refused: unknown, used or expired state");
        return message_page(
            StatusCode::BAD_REQUEST,
            "This sign-in is unknown, was already used or has expired: start it again.",
        );
    };
    let (by, what) = (flow.by, flow.what);
    match flow.stage {
        Stage::Person { link, pending } => {
            let step = super::connect::Step {
                cookie: flow.cookie,
                handle: flow.link,
                link,
            };
            super::connect::person_proved(&ctl, &headers, step, pending, &query).await
        }
        Stage::Upstream { pending, person } => {
            match crate::upstream::oauth_login::finish(pending, &query).await {
                Ok(_) => {
                    if by == super::connect::PERSON {
                        tracing::info!(upstream = %what, "a person signed in to an upstream for themselves");
                    } else {
                        tracing::info!(operator = %by, upstream = %what, "signed in from the approvals page");
                    }
                    crate::metrics::METRICS.sign_in(if person.is_some() {
                        "person"
                    } else {
                        "operator"
                    });
                    // Who bound which account to mcp-warden, in the audit chain (never a token).
                    ctl.broker.audit(serde_json::json!({
                        "kind": "upstream.signed_in",
                        "upstream": what,
                        "operator": (by != super::connect::PERSON).then_some(&by),
                        "person": person,
                    }));
                    message_page(
                        StatusCode::OK,
                        &format!("mcp-warden is signed in to {what}. You can close this tab."),
                    )
                }
                Err(e) => {
                    tracing::warn!(upstream = %what, "sign-in failed: {e}");
                    message_page(StatusCode::BAD_REQUEST, &format!("The sign-in failed: {e}"))
                }
            }
        }
    }
}

/// The value of cookie `name` in `headers`.
pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn serve(
    dir: &Path,
    broker: Arc<Broker>,
    operators: Operators,
) -> std::io::Result<crate::task::Owned> {
    let token = derive_token(&secret(dir)?, PURPOSE);
    let path = socket_path(dir);
    let _ = std::fs::remove_file(&path); // a stale socket of a previous process with our pid
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let app = Router::new()
        .route("/control", axum::routing::post(rpc_local))
        .route("/events", axum::routing::get(events_local))
        .with_state(Ctl {
            broker,
            token,
            operators,
            web: Arc::default(),
            throttle: Arc::default(),
            cfg: None,
            signins: Arc::default(),
        });
    let cleanup = SocketFile(path.clone());
    Ok(crate::task::spawn(
        tracing::info_span!("control-api"),
        async move {
            let _cleanup = cleanup;
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "control API stopped");
            }
        },
    ))
}

/// Removes the socket file when the control API stops.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Some running instance's socket in `dir` (the newest).
pub fn socket_path_any(dir: &Path) -> Option<PathBuf> {
    let mut socks: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("control-") && n.ends_with(".sock"))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    socks.sort();
    socks.pop().map(|(_, p)| p)
}

/// Client side (the CLI): one JSON-RPC call to every running instance's socket in `dir`.
/// Returns (socket, result or error text) per instance that answered.
pub async fn call_all(
    dir: &Path,
    method: &str,
    params: serde_json::Value,
) -> std::io::Result<Vec<(PathBuf, Result<serde_json::Value, String>)>> {
    let token = derive_token(&secret(dir)?, PURPOSE);
    let mut out = vec![];
    let mut sockets: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("control-") && n.ends_with(".sock"))
        })
        .collect();
    sockets.sort();
    for sock in sockets {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                .to_string();
        match rpc_call(&sock, &token, body).await {
            Ok(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let r = match (v.get("result"), v.get("error")) {
                    (Some(r), _) => Ok(r.clone()),
                    (_, Some(e)) => Err(e["message"].as_str().unwrap_or("error").to_string()),
                    _ => Err(format!("unexpected answer: {text}")),
                };
                out.push((sock, r));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                // Nobody listens: a socket left by a process that died.
                let _ = std::fs::remove_file(&sock);
            }
            Err(e) => out.push((sock, Err(e.to_string()))),
        }
    }
    Ok(out)
}

/// A response from an instance's control socket, with the connection that carries its body
/// (hyper's HTTP/1 client over the Unix socket; the connection task ends with the response).
pub struct Answer {
    pub response: hyper::Response<hyper::body::Incoming>,
    _conn: crate::task::Owned,
}

/// One HTTP/1.1 request to an instance's control socket. A status other than 200 is an error
/// (its status line).
pub async fn exchange(
    sock: &Path,
    method: hyper::Method,
    path: &str,
    token: &str,
    body: Option<String>,
) -> std::io::Result<Answer> {
    let stream = tokio::net::UnixStream::connect(sock).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
    let conn = crate::task::spawn(tracing::info_span!("control-client"), async move {
        let _ = conn.await;
    });
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.unwrap_or_default(),
        )))
        .map_err(std::io::Error::other)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    if response.status() != StatusCode::OK {
        return Err(std::io::Error::other(format!(
            "the instance answered {}",
            response.status()
        )));
    }
    Ok(Answer {
        response,
        _conn: conn,
    })
}

/// A JSON-RPC exchange with an instance's control socket: the answer's body as text.
async fn rpc_call(sock: &Path, token: &str, body: String) -> std::io::Result<String> {
    use http_body_util::BodyExt;
    let answer = exchange(sock, hyper::Method::POST, "/control", token, Some(body)).await?;
    let body = answer
        .response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn local_authority_never_from_the_network_operator_tokens_from_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(Broker::local(dir.path().join("s")));
        let token = derive_token(&secret(&dir.path().join("s")).unwrap(), PURPOSE);
        let operators: Operators = Arc::new(std::sync::RwLock::new(vec![(
            crate::config::TokenDigest::of("operator-token-0123456789"),
            "alice".into(),
        )]));
        let ctl = Ctl {
            broker,
            token: token.clone(),
            operators,
            web: Arc::default(),
            throttle: Arc::default(),
            cfg: None,
            signins: Arc::default(),
        };
        let h = |t: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
            m
        };
        let lan: std::net::SocketAddr = "192.168.1.20:5555".parse().unwrap();
        let lo: std::net::SocketAddr = "127.0.0.1:5555".parse().unwrap();
        assert_eq!(authorize(&ctl, &h(&token), None).as_deref(), Some("local"));
        assert_eq!(
            authorize(&ctl, &h(&token), Some(lo)).as_deref(),
            Some("local")
        );
        assert_eq!(
            authorize(&ctl, &h(&token), Some(lan)),
            None,
            "the local token from the network"
        );
        assert_eq!(
            authorize(&ctl, &h("operator-token-0123456789"), Some(lan)).as_deref(),
            Some("operator:alice")
        );
        assert_eq!(
            authorize(&ctl, &h("operator-token-012345678X"), Some(lo)),
            None
        );
        assert_eq!(authorize(&ctl, &HeaderMap::new(), None), None);
    }

    #[test]
    fn secret_is_created_once_and_never_through_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        let a = secret(&dir).unwrap();
        let b = secret(&dir).unwrap();
        assert_eq!(a, b, "never overwritten");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(dir.join(SECRET_FILE)).unwrap().mode() & 0o777,
            0o600
        );
        let t = derive_token(&a, PURPOSE);
        assert_eq!(t.len(), 64);
        assert_ne!(
            t,
            String::from_utf8(a.clone()).unwrap(),
            "the token is not the secret"
        );
        // A symlinked secret is refused.
        let other = base.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(base.path().join("victim"), b"x".repeat(64)).unwrap();
        std::os::unix::fs::symlink(base.path().join("victim"), other.join(SECRET_FILE)).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(secret(&other).is_err());
    }
}
