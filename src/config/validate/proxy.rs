//! `[proxy]`: the listener, limits, timeouts and the front's TLS.

use super::*;

pub(super) const PROXY_KEYS: &[&str] = &[
    "listen",
    "path",
    "allowed_hosts",
    "allowed_origins",
    "max_body_bytes",
    "max_line_bytes",
    "session_idle_timeout_secs",
    "request_timeout_secs",
    "shutdown_grace_secs",
    "server_name",
    "page_size",
    "max_sessions_per_agent",
    "max_inflight_per_session",
    "header_read_timeout_secs",
    "response_mode",
    "stream_after_ms",
    "worker_threads",
    "initialize_wait_secs",
    "auth",
    "keep_token",
    "state_dir",
    "tls",
    "public_url",
];
pub(super) const TLS_KEYS: &[&str] = &["cert", "key", "client_ca", "require_client_cert"];

pub(super) fn proxy_settings(cx: &mut Ctx, mut t: Table) -> ProxySettings {
    let mut p = ProxySettings::default();
    if let Some(s) = t.string(cx, "listen") {
        match s.parse::<SocketAddr>() {
            Ok(a) => p.listen = a,
            Err(_) => cx.err(
                &t.at("listen"),
                format!("`{s}` is not an address like 127.0.0.1:8787"),
            ),
        }
    }
    if let Some(s) = t.string(cx, "path") {
        if s.starts_with('/') && !s.contains(char::is_whitespace) {
            p.path = s;
        } else {
            cx.err(&t.at("path"), "must start with `/`");
        }
    }
    if let Some(v) = t.strings(cx, "allowed_hosts") {
        p.allowed_hosts = v.into_iter().map(|h| h.to_ascii_lowercase()).collect();
    }
    if let Some(v) = t.strings(cx, "allowed_origins") {
        p.allowed_origins = v
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
    }
    if let Some(n) = t.uint(cx, "max_body_bytes", 1024, 1 << 30) {
        p.max_body_bytes = n as usize;
    }
    if let Some(n) = t.uint(cx, "max_line_bytes", 1024, 1 << 30) {
        p.max_line_bytes = n as usize;
    }
    if let Some(d) = t.secs(cx, "session_idle_timeout_secs", 7 * 24 * 3600) {
        p.session_idle_timeout = d;
    }
    if let Some(d) = t.secs(cx, "request_timeout_secs", 24 * 3600) {
        p.request_timeout = d;
    }
    if let Some(d) = t.secs(cx, "shutdown_grace_secs", 3600) {
        p.shutdown_grace = d;
    }
    if let Some(s) = t.string(cx, "server_name") {
        p.server_name = s;
    }
    if let Some(n) = t.uint(cx, "page_size", 0, 100_000) {
        p.page_size = n as usize;
    }
    if let Some(n) = t.uint(cx, "max_sessions_per_agent", 1, 100_000) {
        p.max_sessions_per_agent = n as usize;
    }
    if let Some(n) = t.uint(cx, "max_inflight_per_session", 1, 100_000) {
        p.max_inflight_per_session = n as usize;
    }
    if let Some(d) = t.secs(cx, "header_read_timeout_secs", 3600) {
        p.header_read_timeout = d;
    }
    if let Some(b) = t.boolean(cx, "keep_token") {
        p.keep_token = b;
    }
    match t.string(cx, "auth").as_deref() {
        None | Some("required") => {}
        Some("none") => p.auth = AuthMode::None,
        Some(other) => cx.err(
            &t.at("auth"),
            format!("unknown mode `{other}` (expected required or none)"),
        ),
    }
    if let Some(mut tt) = t.table(cx, "tls") {
        let cert = tt.string(cx, "cert");
        let key = tt.string(cx, "key");
        let client_ca = tt.string(cx, "client_ca").map(PathBuf::from);
        let require = tt.boolean(cx, "require_client_cert").unwrap_or(false);
        if require && client_ca.is_none() {
            cx.err(
                &tt.at("require_client_cert"),
                "needs `client_ca` (the CA that signs client certificates)",
            );
        }
        match (cert, key) {
            (Some(c), Some(k)) => {
                p.tls = Some(crate::config::TlsSettings {
                    cert: PathBuf::from(c),
                    key: PathBuf::from(k),
                    client_ca,
                    require_client_cert: require,
                })
            }
            _ => cx.err(&tt.path, "needs `cert` and `key` (PEM files)"),
        }
        tt.finish(cx, TLS_KEYS);
    }
    if let Some(u) = t.string(cx, "public_url") {
        match public_origin(&u) {
            Ok(o) => {
                // The public address is the front's own: its host is accepted, and so is its
                // origin (the approvals page served from it posts back to it).
                if let Some(host) = url::Url::parse(&o).ok().and_then(|u| {
                    let h = u.host_str()?.to_ascii_lowercase();
                    Some(u.port().map_or(h.clone(), |port| format!("{h}:{port}")))
                }) {
                    p.allowed_hosts.push(host);
                }
                p.allowed_origins.push(o.to_ascii_lowercase());
                p.public_url = Some(o);
            }
            Err(why) => cx.err(&t.at("public_url"), why),
        }
    }
    if let Some(d) = t.string(cx, "state_dir") {
        if let Some(d) = cx.expand(&t.at("state_dir"), &d) {
            p.state_dir = Some(PathBuf::from(d));
        }
    }
    if let Some(d) = t.secs(cx, "initialize_wait_secs", 3600) {
        p.initialize_wait = d;
    }
    match t.string(cx, "response_mode").as_deref() {
        None | Some("auto") => {}
        Some("sse") => p.response_mode = ResponseMode::Sse,
        Some("json") => p.response_mode = ResponseMode::Json,
        Some(other) => cx.err(
            &t.at("response_mode"),
            format!("unknown mode `{other}` (expected auto, sse or json)"),
        ),
    }
    if let Some(ms) = t.uint(cx, "stream_after_ms", 0, 60_000) {
        p.stream_after = Duration::from_millis(ms);
    }
    if let Some(n) = t.uint(cx, "worker_threads", 0, 1024) {
        p.worker_threads = n as usize;
    }
    t.finish(cx, PROXY_KEYS);
    p
}

/// `[proxy] public_url`: the origin agents and browsers reach the front by (behind a proxy that
/// terminates TLS, say), as `scheme://host[:port]`. https, or http on a loopback host only: it
/// becomes the redirect of OAuth sign-ins, which authorization servers accept only so.
fn public_origin(s: &str) -> Result<String, String> {
    let u = super::auth::secure_url(s).map_err(str::to_string)?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry a user name or password".to_string());
    }
    if u.path() != "/" {
        return Err(
            "must be an origin only, like https://warden.example.com (mcp-warden's routes sit at its root)"
                .to_string(),
        );
    }
    Ok(u.origin().ascii_serialization())
}
