//! `[upstreams.NAME]`: how each server is reached (stdio, Streamable HTTP, legacy SSE), its
//! limits, TLS and per-server tool policy.

use super::tools::{rewrite, schema_profile};
use super::*;
use crate::config::GrantPer;

pub(super) const UPSTREAM_KEYS: &[&str] = &[
    "command",
    "args",
    "env",
    "cwd",
    "inherit_env",
    "limits",
    "url",
    "headers",
    "tls",
    "oauth",
    "transport",
    "namespace",
    "startup_timeout_secs",
    "enabled",
    "shared",
    "tools",
    "schema",
    "on_tool_change",
    "consent",
    "required",
];
pub(super) const LIMIT_KEYS: &[&str] = &["memory_mb", "cpu_secs", "open_files", "processes"];
pub(super) const UPSTREAM_TLS_KEYS: &[&str] = &["ca", "cert", "key"];
pub(super) const UPSTREAM_OAUTH_KEYS: &[&str] = &[
    "grant",
    "issuer",
    "client_id",
    "client_secret_env",
    "client_metadata_url",
    "scopes",
    "per",
];

/// `oauth = { grant, issuer, client_id, client_secret_env, client_metadata_url, scopes, per }`.
fn oauth(cx: &mut Ctx, mut t: Table) -> Option<crate::config::UpstreamOAuth> {
    use crate::config::OAuthGrant;
    let before = cx.errors.len();
    let grant = match t.string(cx, "grant").as_deref() {
        None | Some("authorization_code") => OAuthGrant::AuthorizationCode,
        Some("client_credentials") => OAuthGrant::ClientCredentials,
        Some("token_exchange") => OAuthGrant::TokenExchange,
        Some(other) => {
            cx.err(
                &t.at("grant"),
                format!("`{other}` is not a grant mcp-warden uses: `authorization_code` (an operator signs in with `mcp-warden auth login`), `client_credentials` (a client registered for mcp-warden) or `token_exchange` (the caller's own identity provider token traded for the upstream's)"),
            );
            OAuthGrant::AuthorizationCode
        }
    };
    let client_id = t.string(cx, "client_id").filter(|c| !c.is_empty());
    let secret_env = t.string(cx, "client_secret_env");
    let issuer = t.string(cx, "issuer");
    if let Some(i) = &issuer {
        if let Err(e) = super::auth::secure_url(i) {
            cx.err(
                &t.at("issuer"),
                format!("the authorization server's issuer: {e}"),
            );
        }
    }
    let client_metadata_url = t.string(cx, "client_metadata_url");
    if let Some(u) = &client_metadata_url {
        // The specification: an https URL with a path, which is the client id itself.
        let ok = reqwest::Url::parse(u).is_ok_and(|p| {
            p.scheme() == "https"
                && p.path() != "/"
                && p.fragment().is_none()
                && p.query().is_none()
        });
        if !ok {
            cx.err(&t.at("client_metadata_url"), "must be an https:// URL with a path (where mcp-warden's client metadata is published)");
        }
        if grant != OAuthGrant::AuthorizationCode {
            cx.err(
                &t.at("client_metadata_url"),
                "only for a sign-in (`authorization_code`)",
            );
        }
    }
    let per = match t.string(cx, "per").as_deref() {
        None | Some("upstream") => GrantPer::Upstream,
        Some(p @ ("agent" | "user")) if grant != OAuthGrant::AuthorizationCode => {
            cx.err(
                &t.at("per"),
                format!("only a sign-in (`authorization_code`) is made per {p}"),
            );
            GrantPer::Upstream
        }
        Some("agent") => GrantPer::Agent,
        Some("user") => GrantPer::Person,
        Some(other) => {
            cx.err(
                &t.at("per"),
                format!(
                    "`{other}`: expected `upstream` (one sign-in), `agent` (each agent signs in) or `user` (each person signs in)"
                ),
            );
            GrantPer::Upstream
        }
    };
    let scopes = t.strings(cx, "scopes").unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if !super::auth::valid_scope(s) {
            cx.err(&format!("{}[{i}]", t.at("scopes")), "not a valid scope");
        }
    }
    let path = t.path.clone();
    t.finish(cx, UPSTREAM_OAUTH_KEYS);
    let client_secret = match secret_env {
        None => None,
        Some(var) => match (cx.env)(&var) {
            Some(s) if !s.is_empty() => Some(Secret::new(s)),
            _ => {
                cx.err(
                    &format!("{path}.client_secret_env"),
                    format!("environment variable `{var}` is not set"),
                );
                None
            }
        },
    };
    if matches!(
        grant,
        OAuthGrant::ClientCredentials | OAuthGrant::TokenExchange
    ) {
        if client_id.is_none() {
            cx.err(
                &path,
                "this grant needs `client_id` (mcp-warden's client at the authorization server)",
            );
        }
        if client_secret.is_none() && cx.errors.len() == before {
            cx.err(&path, "this grant needs `client_secret_env` (the environment variable holding the client's secret)");
        }
    }
    if client_secret.is_some() && client_id.is_none() {
        cx.err(&path, "`client_secret_env` needs `client_id`");
    }
    (cx.errors.len() == before).then(|| crate::config::UpstreamOAuth {
        grant,
        issuer,
        client_id,
        client_secret,
        client_metadata_url,
        scopes,
        store: PathBuf::new(), // set once the state directory is known
        per,
        exchange_issuer: None, // set once [auth.oidc] is known
    })
}

pub(super) fn upstream(cx: &mut Ctx, name: &str, mut t: Table) -> Option<Upstream> {
    let command = t.string(cx, "command");
    let args = t.strings(cx, "args");
    let env = t.string_map(cx, "env");
    let cwd = t.string(cx, "cwd");
    let inherit_env = t.strings(cx, "inherit_env");
    let limits = t.table(cx, "limits").map(|mut lt| {
        let l = crate::config::Limits {
            memory_mb: lt.uint(cx, "memory_mb", 16, 1 << 30),
            cpu_secs: lt.uint(cx, "cpu_secs", 1, 1 << 30),
            open_files: lt.uint(cx, "open_files", 16, 1 << 20),
            processes: lt.uint(cx, "processes", 1, 1 << 20),
        };
        lt.finish(cx, LIMIT_KEYS);
        l
    });
    let url = t.string(cx, "url");
    let headers = t.string_map(cx, "headers");
    let transport = t.string(cx, "transport");
    let namespace = t.string(cx, "namespace");
    let startup = t.secs(cx, "startup_timeout_secs", 3600);
    let enabled = t.boolean(cx, "enabled").unwrap_or(true);
    let shared = t.boolean(cx, "shared").unwrap_or(false);
    let consent = t.boolean(cx, "consent").unwrap_or(true);
    let required = t.boolean(cx, "required").unwrap_or(false);
    let schema = schema_profile(cx, &mut t);
    let on_tool_change = match t.string(cx, "on_tool_change").as_deref() {
        None | Some("warn") => ToolChange::Warn,
        Some("block") => ToolChange::Block,
        Some(other) => {
            cx.err(
                &t.at("on_tool_change"),
                format!("unknown value `{other}` (expected warn or block)"),
            );
            ToolChange::Warn
        }
    };
    let mut tools = std::collections::BTreeMap::new();
    if let Some(tt) = t.table(cx, "tools") {
        for (tool, v) in tt.t {
            let p = join(&tt.path, tool);
            match v {
                toml::Value::Table(rt) => {
                    if let Some(rw) = rewrite(cx, Table::new(p, rt)) {
                        tools.insert(tool.clone(), std::sync::Arc::new(rw));
                    }
                }
                other => cx.err(&p, format!("expected a table, found {}", type_name(other))),
            }
        }
    }
    let before = cx.errors.len();

    if let Some(ns) = &namespace {
        if !ns.is_empty() && !valid_name(ns) {
            cx.err(
                &t.at("namespace"),
                "1-32 characters of A-Z a-z 0-9 _ - (no `__`), or \"\" for none",
            );
        }
    }
    let transport_kind = match transport.as_deref() {
        None => None,
        Some("stdio") => Some("stdio"),
        Some("streamable-http" | "http") => Some("http"),
        Some("sse") => Some("sse"),
        Some(other) => {
            cx.err(
                &t.at("transport"),
                format!("unknown transport `{other}` (expected stdio, streamable-http or sse)"),
            );
            None
        }
    };
    let transport = match (&command, &url) {
        (Some(_), Some(_)) => {
            cx.err(
                &t.path,
                "give either `command` (stdio) or `url` (HTTP), not both",
            );
            None
        }
        (None, None) => {
            cx.err(
                &t.path,
                "missing `command` (stdio upstream) or `url` (HTTP upstream)",
            );
            None
        }
        (Some(cmd), None) => {
            if matches!(transport_kind, Some("http" | "sse")) {
                cx.err(
                    &t.at("transport"),
                    "an HTTP transport needs `url`, not `command`",
                );
            }
            for key in ["headers", "tls", "oauth"] {
                if t.t.contains_key(key) {
                    cx.err(&t.at(key), "only valid for HTTP upstreams (`url`)");
                }
            }
            let command = cx.expand(&t.at("command"), cmd);
            if command.as_deref().is_some_and(str::is_empty) {
                cx.err(&t.at("command"), "must not be empty");
            }
            let args = args
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, a)| cx.expand(&format!("{}[{i}]", t.at("args")), a))
                .collect::<Option<Vec<_>>>();
            let env_map = env
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v, p)| cx.expand(&p, &v).map(|v| (k, Secret::new(v))))
                .collect::<Option<BTreeMap<_, _>>>();
            let cwd = cwd
                .and_then(|c| cx.expand(&t.at("cwd"), &c))
                .map(PathBuf::from);
            match (command, args, env_map) {
                (Some(command), Some(args), Some(env)) => Some(Transport::Stdio(StdioSpec {
                    command,
                    args,
                    env,
                    cwd,
                    inherit_env: inherit_env.unwrap_or_default(),
                    limits,
                })),
                _ => None,
            }
        }
        (None, Some(u)) => {
            if transport_kind == Some("stdio") {
                cx.err(
                    &t.at("transport"),
                    "a stdio transport needs `command`, not `url`",
                );
            }
            for key in ["args", "env", "cwd", "inherit_env", "limits"] {
                if t.t.contains_key(key) {
                    cx.err(&t.at(key), "only valid for stdio upstreams (`command`)");
                }
            }
            let url = cx.expand(&t.at("url"), u);
            if let Some(u) = &url {
                match reqwest::Url::parse(u) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                    Ok(_) => cx.err(&t.at("url"), "must be an http:// or https:// URL"),
                    Err(e) => cx.err(&t.at("url"), format!("not a valid URL: {e}")),
                }
            }
            let mut hs = vec![];
            let mut ok = true;
            for (k, v, p) in headers.unwrap_or_default() {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    cx.err(&p, "not a valid HTTP header name");
                    ok = false;
                    continue;
                }
                match cx.expand(&p, &v) {
                    Some(v) => {
                        if reqwest::header::HeaderValue::from_str(&v).is_err() {
                            cx.err(&p, "not a valid HTTP header value");
                            ok = false;
                        }
                        hs.push((k, Secret::new(v)))
                    }
                    None => ok = false,
                }
            }
            let flavor = match transport_kind {
                Some("sse") => HttpFlavor::LegacySse,
                Some("http") => HttpFlavor::Streamable,
                _ => HttpFlavor::Auto,
            };
            let tls = t.table(cx, "tls").map(|mut tt| {
                let mut path = |key: &'static str| {
                    let at = tt.at(key);
                    tt.string(cx, key)
                        .and_then(|v| cx.expand(&at, &v))
                        .map(PathBuf::from)
                };
                let tls = crate::config::UpstreamTls {
                    ca: path("ca"),
                    cert: path("cert"),
                    key: path("key"),
                };
                if tls.cert.is_some() != tls.key.is_some() {
                    cx.err(
                        &tt.path,
                        "a client certificate needs both `cert` and `key` (PEM files)",
                    );
                }
                if url.as_deref().is_some_and(|u| !u.starts_with("https://")) {
                    cx.err(&tt.path, "only for an https:// `url`");
                }
                tt.finish(cx, UPSTREAM_TLS_KEYS);
                tls
            });
            let oauth = t.table(cx, "oauth").and_then(|ot| oauth(cx, ot));
            if oauth.as_ref().is_some_and(|o| o.per != GrantPer::Upstream) && shared {
                cx.err(
                    &t.at("oauth"),
                    "a sign-in per agent or per user needs a connection per session: not with `shared = true`",
                );
            }
            if oauth.is_some()
                && hs
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                cx.err(
                    &t.at("oauth"),
                    "the upstream's `Authorization` comes from OAuth: remove it from `headers`",
                );
            }
            if oauth.is_some() && flavor == HttpFlavor::LegacySse {
                cx.err(
                    &t.at("oauth"),
                    "not supported with the legacy SSE transport",
                );
            }
            match (url, ok) {
                (Some(url), true) => Some(Transport::Http(HttpSpec {
                    url,
                    headers: hs,
                    flavor,
                    tls,
                    oauth,
                })),
                _ => None,
            }
        }
    };
    t.finish(cx, UPSTREAM_KEYS);
    if cx.errors.len() > before {
        return None;
    }
    Some(Upstream {
        name: name.to_string(),
        transport: transport?,
        namespace: Some(namespace.unwrap_or_else(|| DEFAULT_NS.to_string()))
            .filter(|ns| !ns.is_empty()),
        startup_timeout: startup.unwrap_or(Duration::from_secs(60)),
        enabled,
        shared,
        tools,
        schema,
        on_tool_change,
        consent,
        required,
    })
}
