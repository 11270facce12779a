//! The connection service: every request on the front's listener goes through [`Service`]:
//! the Host/Origin guard against DNS rebinding, security headers, body limits, and dispatch
//! to the MCP endpoint, health, metrics or the approvals console.

use super::*;

/// The HTTP service of one connection. The MCP endpoint and the health and metrics routes are
/// dispatched here directly (the hot path: no router, no boxed middleware, a handful of
/// allocations per request); everything else (`/control`, `/approvals`, 404) goes to an axum
/// router. Every response, refusals included, carries the security headers, and `Host` and
/// `Origin` are checked before anything else.
#[derive(Clone)]
pub(super) struct Service {
    pub(super) front: Front,
    pub(super) peer: crate::tls::Peer,
    pub(super) fallback: Arc<Router>,
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
    pub(super) async fn route(self, req: axum::http::Request<hyper::body::Incoming>) -> Response {
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
        if let Some(suffix) = path.strip_prefix(PROTECTED_RESOURCE) {
            return protected_resource(&front, suffix, plain_get);
        }
        // mcp-warden's client ID metadata document, where an upstream's `oauth` publishes it:
        // public, as authorization servers fetch it.
        if plain_get {
            if let Some(doc) = crate::upstream::oauth_login::client_metadata_at(&front.cfg(), path)
            {
                return (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.to_string(),
                )
                    .into_response();
            }
        }
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

const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";

/// RFC 9728 protected resource metadata, with `[auth.oidc]`: at the well-known name followed by
/// the resource's path (where the challenges point) and at the bare well-known name (where
/// clients look when there is no challenge). Unauthenticated, as its readers have no token yet.
fn protected_resource(front: &Front, suffix: &str, plain_get: bool) -> Response {
    let auth = crate::util::read(&front.inner.auth).clone();
    let Some(settings) = auth.oidc().map(|v| v.settings().clone()) else {
        return jsonrpc_error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "Not found");
    };
    let resource_path = reqwest::Url::parse(&settings.resource)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    if !(suffix.is_empty() || suffix.trim_end_matches('/') == resource_path) {
        return jsonrpc_error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "Not found");
    }
    if !plain_get {
        return method_not_allowed("GET, HEAD");
    }
    let body = crate::oidc::resource_metadata(&settings).to_string();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

pub(super) fn method_not_allowed(allow: &'static str) -> Response {
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
pub(super) async fn read_body(
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, Response> {
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
        Err(e) => Err(failure_response(&crate::error::Failure::UnreadableBody, &e)),
    }
}

/// What is not the MCP endpoint or a health route: the approval console and control API (if
/// approvals are configured), otherwise 404.
pub(super) fn fallback_router(front: &Front) -> Router {
    let limit = front.inner.max_body;
    let mut app = Router::new();
    // Remote operators decide approvals here (operator tokens; the local token only from
    // loopback). Behind the same Host/Origin checks and security headers as everything else.
    if let Some(broker) = front.inner.shared.broker.clone() {
        let dir = front.cfg().state_dir();
        let of_front = front.clone();
        match crate::approval::control::http_routes(
            &dir,
            broker,
            front.inner.shared.operators.clone(),
            Arc::new(move || of_front.cfg()),
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

pub(super) fn security_headers(h: &mut HeaderMap) {
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
pub(super) fn is_loopback_host(host: &str) -> bool {
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
pub(super) fn guard(front: &Front, headers: &HeaderMap) -> Option<Response> {
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

pub(super) fn accepts(headers: &HeaderMap, want: &str) -> bool {
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

pub(super) fn version_error(headers: &HeaderMap) -> Option<Response> {
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
