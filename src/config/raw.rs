//! The checking walk over the parsed TOML table. Written by hand rather than with
//! `#[serde(deny_unknown_fields)]` so that *every* error is reported at once, each with its key
//! path and, for a typo, the key that was probably meant.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    Agent, AuthMode, Config, HttpFlavor, HttpSpec, ProxySettings, ResponseMode, Rules,
    SchemaProfile, Secret, StdioSpec, TokenDigest, ToolChange, ToolRewrite, Transport, Upstream,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `upstreams.fs.args[2]`; empty for file-level errors.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Ctx<'a> {
    errors: Vec<ConfigError>,
    env: Env<'a>,
}

impl Ctx<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Expands `${VAR}` (and `$$` → `$`). A missing variable is an error naming it.
    fn expand(&mut self, path: &str, s: &str) -> Option<String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        let mut ok = true;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
            } else if let Some(body) = after.strip_prefix('{') {
                match body.find('}') {
                    Some(end) => {
                        let name = &body[..end];
                        let valid = !name.is_empty()
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !name.starts_with(|c: char| c.is_ascii_digit());
                        if !valid {
                            self.err(path, format!("invalid variable reference `${{{name}}}`"));
                            ok = false;
                        } else if let Some(v) = (self.env)(name) {
                            out.push_str(&v);
                        } else {
                            self.err(path, format!("environment variable `{name}` is not set"));
                            ok = false;
                        }
                        rest = &body[end + 1..];
                    }
                    None => {
                        self.err(path, "unterminated `${` (write `$$` for a literal `$`)");
                        return None;
                    }
                }
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        ok.then_some(out)
    }
}

/// One table being checked: remembers which keys were read, so leftovers are reported.
struct Table<'t> {
    path: String,
    t: &'t toml::Table,
    seen: BTreeSet<&'static str>,
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn join(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if simple {
        key.to_string()
    } else {
        format!("\"{}\"", key.escape_default())
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

impl<'t> Table<'t> {
    fn new(path: String, t: &'t toml::Table) -> Self {
        Table {
            path,
            t,
            seen: BTreeSet::new(),
        }
    }

    fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn get(&mut self, key: &'static str) -> Option<&'t toml::Value> {
        self.seen.insert(key);
        self.t.get(key)
    }

    fn string(&mut self, cx: &mut Ctx, key: &'static str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, cx: &mut Ctx, key: &'static str) -> Option<bool> {
        match self.get(key)? {
            toml::Value::Boolean(b) => Some(*b),
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected a boolean, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn uint(&mut self, cx: &mut Ctx, key: &'static str, min: u64, max: u64) -> Option<u64> {
        match self.get(key)? {
            toml::Value::Integer(i)
                if (*i as i128) >= min as i128 && (*i as i128) <= max as i128 =>
            {
                Some(*i as u64)
            }
            toml::Value::Integer(i) => {
                cx.err(
                    &self.at(key),
                    format!("{i} is out of range ({min}..={max})"),
                );
                None
            }
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected an integer, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn secs(&mut self, cx: &mut Ctx, key: &'static str, max: u64) -> Option<Duration> {
        self.uint(cx, key, 1, max).map(Duration::from_secs)
    }

    fn strings(&mut self, cx: &mut Ctx, key: &'static str) -> Option<Vec<String>> {
        let path = self.at(key);
        match self.get(key)? {
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    match v {
                        toml::Value::String(s) => out.push(s.clone()),
                        other => cx.err(
                            &format!("{path}[{i}]"),
                            format!("expected a string, found {}", type_name(other)),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                cx.err(
                    &path,
                    format!("expected an array of strings, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A table of string values, e.g. `env = { KEY = "v" }`.
    fn string_map(
        &mut self,
        cx: &mut Ctx,
        key: &'static str,
    ) -> Option<Vec<(String, String, String)>> {
        let path = self.at(key);
        match self.get(key)? {
            toml::Value::Table(t) => {
                let mut out = Vec::with_capacity(t.len());
                for (k, v) in t {
                    let p = join(&path, k);
                    match v {
                        toml::Value::String(s) => out.push((k.clone(), s.clone(), p)),
                        other => {
                            cx.err(&p, format!("expected a string, found {}", type_name(other)))
                        }
                    }
                }
                Some(out)
            }
            other => {
                cx.err(
                    &path,
                    format!("expected a table of strings, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn table(&mut self, cx: &mut Ctx, key: &'static str) -> Option<Table<'t>> {
        let path = self.at(key);
        match self.get(key)? {
            toml::Value::Table(t) => Some(Table::new(path, t)),
            other => {
                cx.err(
                    &path,
                    format!("expected a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// Reports every key that was not read, suggesting the closest known one.
    fn finish(self, cx: &mut Ctx, known: &[&'static str]) {
        for key in self.t.keys() {
            if self.seen.contains(key.as_str()) {
                continue;
            }
            let hint = known
                .iter()
                .map(|k| (edit_distance(k, key), *k))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            cx.err(&join(&self.path, key), format!("unknown key{hint}"));
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

const TOP_KEYS: &[&str] = &["proxy", "upstreams", "agents", "approvals", "operators"];
const OPERATOR_KEYS: &[&str] = &["token_env", "token_sha256"];
const APPROVAL_KEYS: &[&str] = &[
    "default_expiry_secs",
    "max_expiry_secs",
    "progress_interval_secs",
    "require",
    "webhooks",
    "grant_ttl_secs",
    "grant_scope",
];
const WEBHOOK_KEYS: &[&str] = &["url", "secret_env"];
const REQUIRE_KEYS: &[&str] = &["tools", "annotations", "agents", "upstreams"];
const AGENT_KEYS: &[&str] = &[
    "cert_names",
    "token_env",
    "token_sha256",
    "servers",
    "tools",
    "prompts",
    "resources",
    "schema",
];
const RULE_KEYS: &[&str] = &["allow", "deny"];
const AGENT_TOOL_KEYS: &[&str] = &["allow", "deny", "rewrite"];
const REWRITE_KEYS: &[&str] = &[
    "rename",
    "description",
    "title",
    "annotations",
    "pin",
    "hide",
];
const PROXY_KEYS: &[&str] = &[
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
];
const LIMIT_KEYS: &[&str] = &["memory_mb", "cpu_secs", "open_files", "processes"];
const TLS_KEYS: &[&str] = &["cert", "key", "client_ca", "require_client_cert"];
const UPSTREAM_TLS_KEYS: &[&str] = &["ca", "cert", "key"];
const UPSTREAM_KEYS: &[&str] = &[
    "command",
    "args",
    "env",
    "cwd",
    "inherit_env",
    "limits",
    "url",
    "headers",
    "tls",
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

/// A name usable in exposed tool names and log fields.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.contains("__")
}

pub(super) fn parse(text: &str, env: Env) -> Result<Config, ConfigErrors> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("invalid TOML: {}", e.to_string().trim_end()),
        }])
    })?;
    let mut cx = Ctx {
        errors: vec![],
        env,
    };
    let mut top = Table::new(String::new(), &doc);
    let proxy = match top.table(&mut cx, "proxy") {
        Some(t) => proxy_settings(&mut cx, t),
        None => ProxySettings::default(),
    };
    let mut upstreams = vec![];
    if let Some(t) = top.table(&mut cx, "upstreams") {
        for (name, v) in t.t {
            let path = join("upstreams", name);
            if !valid_name(name) {
                cx.err(
                    &path,
                    "upstream names are 1-32 characters of A-Z a-z 0-9 _ - (no `__`)",
                );
            }
            match v {
                toml::Value::Table(ut) => {
                    if let Some(u) = upstream(&mut cx, name, Table::new(path, ut)) {
                        upstreams.push(u);
                    }
                }
                other => cx.err(
                    &path,
                    format!("expected a table, found {}", type_name(other)),
                ),
            }
        }
    }
    let mut approvals = super::ApprovalSettings::default();
    if let Some(mut t) = top.table(&mut cx, "approvals") {
        if let Some(d) = t.secs(&mut cx, "default_expiry_secs", 24 * 3600) {
            approvals.default_expiry = d;
        }
        if let Some(d) = t.secs(&mut cx, "max_expiry_secs", 7 * 24 * 3600) {
            approvals.max_expiry = d;
        }
        if let Some(d) = t.secs(&mut cx, "progress_interval_secs", 3600) {
            approvals.progress_interval = d;
        }
        approvals.grant_ttl = t.secs(&mut cx, "grant_ttl_secs", 365 * 24 * 3600);
        match t.string(&mut cx, "grant_scope").as_deref() {
            None | Some("tool") => {}
            Some("arguments") => approvals.grant_per_arguments = true,
            Some(other) => cx.err(
                &t.at("grant_scope"),
                format!("unknown scope `{other}` (expected tool or arguments)"),
            ),
        }
        let path = t.at("require");
        match t.get("require") {
            None => {}
            Some(toml::Value::Array(rules)) => {
                for (i, r) in rules.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let toml::Value::Table(rt) = r else {
                        cx.err(&p, "expected a table");
                        continue;
                    };
                    let mut rt = Table::new(p.clone(), rt);
                    let rule = super::RequireRule {
                        tools: rt
                            .strings(&mut cx, "tools")
                            .unwrap_or_default()
                            .into_iter()
                            .map(crate::glob::Pattern::new)
                            .collect(),
                        annotations: rt.strings(&mut cx, "annotations").unwrap_or_default(),
                        agents: rt.strings(&mut cx, "agents").unwrap_or_default(),
                        upstreams: rt.strings(&mut cx, "upstreams").unwrap_or_default(),
                    };
                    if rule.tools.is_empty()
                        && rule.annotations.is_empty()
                        && rule.agents.is_empty()
                        && rule.upstreams.is_empty()
                    {
                        cx.err(&p, "an empty rule would hold every call; name tools, annotations, agents or upstreams");
                    }
                    rt.finish(&mut cx, REQUIRE_KEYS);
                    approvals.require.push(rule);
                }
            }
            Some(other) => cx.err(
                &path,
                format!(
                    "expected an array of tables ([[approvals.require]]), found {}",
                    type_name(other)
                ),
            ),
        }
        let path = t.at("webhooks");
        match t.get("webhooks") {
            None => {}
            Some(toml::Value::Array(hooks)) => {
                for (i, h) in hooks.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let toml::Value::Table(ht) = h else {
                        cx.err(&p, "expected a table");
                        continue;
                    };
                    let mut ht = Table::new(p.clone(), ht);
                    let url = ht.string(&mut cx, "url");
                    let secret_env = ht.string(&mut cx, "secret_env");
                    ht.finish(&mut cx, WEBHOOK_KEYS);
                    let Some(url) = url else {
                        cx.err(&p, "missing `url`");
                        continue;
                    };
                    let scheme_ok = reqwest::Url::parse(&url)
                        .is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                    if !scheme_ok {
                        cx.err(&format!("{p}.url"), "must be an http:// or https:// URL");
                        continue;
                    }
                    let Some(var) = secret_env else {
                        cx.err(&p, "missing `secret_env` (the environment variable holding the signing secret)");
                        continue;
                    };
                    match (cx.env)(&var) {
                        Some(sec) if sec.len() >= 16 => approvals.webhooks.push(super::Webhook {
                            url,
                            secret: Secret::new(sec),
                        }),
                        Some(_) => cx.err(
                            &format!("{p}.secret_env"),
                            format!("the secret in `{var}` is too short (at least 16 characters)"),
                        ),
                        None => cx.err(
                            &format!("{p}.secret_env"),
                            format!("environment variable `{var}` is not set"),
                        ),
                    }
                }
            }
            Some(other) => cx.err(
                &path,
                format!(
                    "expected an array of tables ([[approvals.webhooks]]), found {}",
                    type_name(other)
                ),
            ),
        }
        t.finish(&mut cx, APPROVAL_KEYS);
    }
    let mut agents = vec![];
    if let Some(t) = top.table(&mut cx, "agents") {
        for (name, v) in t.t {
            let path = join("agents", name);
            if !valid_name(name) {
                cx.err(
                    &path,
                    "agent names are 1-32 characters of A-Z a-z 0-9 _ - (no `__`)",
                );
            }
            match v {
                toml::Value::Table(at) => {
                    if let Some(a) = agent(&mut cx, name, Table::new(path, at), &upstreams) {
                        agents.push(std::sync::Arc::new(a));
                    }
                }
                other => cx.err(
                    &path,
                    format!("expected a table, found {}", type_name(other)),
                ),
            }
        }
    }
    let mut operators = vec![];
    if let Some(t) = top.table(&mut cx, "operators") {
        for (name, v) in t.t {
            let path = join("operators", name);
            let toml::Value::Table(ot) = v else {
                cx.err(&path, format!("expected a table, found {}", type_name(v)));
                continue;
            };
            let mut ot = Table::new(path.clone(), ot);
            let tokens = tokens(&mut cx, &mut ot);
            ot.finish(&mut cx, OPERATOR_KEYS);
            if tokens.is_empty() {
                cx.err(&path, "an operator needs `token_env` or `token_sha256`");
            }
            operators.push(super::Operator {
                name: name.clone(),
                tokens,
            });
        }
    }
    for o in &operators {
        if agents
            .iter()
            .any(|a| a.tokens.iter().any(|t| o.tokens.contains(t)))
        {
            cx.err(
                &join("operators", &o.name),
                "uses an agent's token: an agent must never be able to decide",
            );
        }
    }
    // A token identifies exactly one agent.
    for (i, a) in agents.iter().enumerate() {
        for b in &agents[i + 1..] {
            if a.tokens.iter().any(|t| b.tokens.contains(t)) {
                cx.err(
                    &join("agents", &b.name),
                    format!("uses the same token as agent `{}`", a.name),
                );
            }
        }
    }
    if !agents.is_empty() && proxy.auth == AuthMode::None {
        cx.err("proxy.auth", "`none` is only for the single-user case: with agents named, every caller must present its credential");
    }
    top.finish(&mut cx, TOP_KEYS);
    if upstreams.is_empty() && cx.errors.is_empty() {
        cx.err("upstreams", "no upstream servers configured");
    }
    // Default namespacing: prefix names only when more than one upstream shares the endpoint.
    let several = upstreams.iter().filter(|u| u.enabled).count() > 1;
    for u in &mut upstreams {
        if u.namespace.as_deref() == Some(DEFAULT_NS) {
            u.namespace = several.then(|| u.name.clone());
        }
    }
    if cx.errors.is_empty() {
        Ok(Config {
            source: None,
            proxy,
            upstreams,
            agents,
            approvals,
            operators,
        })
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

/// Marker for "namespace not given": resolved once all upstreams are known.
const DEFAULT_NS: &str = "\0default";

fn proxy_settings(cx: &mut Ctx, mut t: Table) -> ProxySettings {
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
                p.tls = Some(super::TlsSettings {
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

fn upstream(cx: &mut Ctx, name: &str, mut t: Table) -> Option<Upstream> {
    let command = t.string(cx, "command");
    let args = t.strings(cx, "args");
    let env = t.string_map(cx, "env");
    let cwd = t.string(cx, "cwd");
    let inherit_env = t.strings(cx, "inherit_env");
    let limits = t.table(cx, "limits").map(|mut lt| {
        let l = super::Limits {
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
            for key in ["headers", "tls"] {
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
                let tls = super::UpstreamTls {
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
            match (url, ok) {
                (Some(url), true) => Some(Transport::Http(HttpSpec {
                    url,
                    headers: hs,
                    flavor,
                    tls,
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

fn schema_profile(cx: &mut Ctx, t: &mut Table) -> Option<SchemaProfile> {
    match t.string(cx, "schema").as_deref() {
        None => None,
        Some("passthrough") => Some(SchemaProfile::Passthrough),
        Some("anthropic") => Some(SchemaProfile::Anthropic),
        Some("openai") => Some(SchemaProfile::OpenAi),
        Some(other) => {
            cx.err(
                &t.at("schema"),
                format!("unknown profile `{other}` (expected anthropic, openai or passthrough)"),
            );
            None
        }
    }
}

fn patterns(list: Vec<String>) -> Vec<crate::glob::Pattern> {
    list.into_iter().map(crate::glob::Pattern::new).collect()
}

fn rules(cx: &mut Ctx, mut t: Table, known: &[&'static str]) -> Rules {
    let allow = t.strings(cx, "allow").unwrap_or_default();
    let deny = t.strings(cx, "deny").unwrap_or_default();
    for (key, list) in [("allow", &allow), ("deny", &deny)] {
        for (i, p) in list.iter().enumerate() {
            if p.is_empty() {
                cx.err(&format!("{}[{i}]", t.at(key)), "empty pattern");
            }
        }
    }
    t.finish(cx, known);
    Rules {
        allow: patterns(allow),
        deny: patterns(deny),
    }
}

fn to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn rewrite(cx: &mut Ctx, mut t: Table) -> Option<ToolRewrite> {
    let before = cx.errors.len();
    let mut rw = ToolRewrite {
        rename: t.string(cx, "rename"),
        description: t.string(cx, "description"),
        title: t.string(cx, "title"),
        ..Default::default()
    };
    if let Some(r) = &rw.rename {
        if !crate::mcp::names::is_provider_safe(r) {
            cx.err(
                &t.at("rename"),
                "must match ^[a-zA-Z0-9_-]{1,64}$ (a name every LLM provider accepts)",
            );
        }
    }
    if let Some(a) = t.table(cx, "annotations") {
        rw.annotations = Some(a.t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect());
    }
    if let Some(p) = t.table(cx, "pin") {
        rw.pin = p.t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
    }
    rw.hide = t.strings(cx, "hide").unwrap_or_default();
    for never in crate::mcp::NEVER_ADVERTISED {
        if rw.pin.contains_key(*never) || rw.hide.iter().any(|h| h == never) {
            cx.err(
                &t.at("pin"),
                format!("`{never}` belongs to the consent flow and cannot be pinned or hidden"),
            );
        }
    }
    for h in &rw.hide {
        if rw.pin.contains_key(h) {
            cx.err(&t.at("hide"), format!("`{h}` is both pinned and hidden"));
        }
    }
    t.finish(cx, REWRITE_KEYS);
    (cx.errors.len() == before).then_some(rw)
}

fn agent(cx: &mut Ctx, name: &str, mut t: Table, upstreams: &[Upstream]) -> Option<Agent> {
    let before = cx.errors.len();
    let tokens = tokens(cx, &mut t);
    let cert_names = t.strings(cx, "cert_names").unwrap_or_default();
    let servers = t.strings(cx, "servers");
    if let Some(list) = &servers {
        for (i, s) in list.iter().enumerate() {
            if !upstreams.iter().any(|u| &u.name == s) {
                cx.err(
                    &format!("{}[{i}]", t.at("servers")),
                    format!("no upstream named `{s}`"),
                );
            }
        }
    }
    let mut tool_rules = Rules::default();
    let mut rewrites = std::collections::BTreeMap::new();
    if let Some(mut tt) = t.table(cx, "tools") {
        tool_rules.allow = patterns(tt.strings(cx, "allow").unwrap_or_default());
        tool_rules.deny = patterns(tt.strings(cx, "deny").unwrap_or_default());
        if let Some(rt) = tt.table(cx, "rewrite") {
            for (tool, v) in rt.t {
                let p = join(&rt.path, tool);
                match v {
                    toml::Value::Table(x) => {
                        if let Some(rw) = rewrite(cx, Table::new(p, x)) {
                            rewrites.insert(tool.clone(), std::sync::Arc::new(rw));
                        }
                    }
                    other => cx.err(&p, format!("expected a table, found {}", type_name(other))),
                }
            }
        }
        tt.finish(cx, AGENT_TOOL_KEYS);
    }
    let prompts = t.table(cx, "prompts").map(|pt| rules(cx, pt, RULE_KEYS));
    let resources = t.table(cx, "resources").map(|rt| rules(cx, rt, RULE_KEYS));
    let schema = schema_profile(cx, &mut t);
    t.finish(cx, AGENT_KEYS);
    (cx.errors.len() == before).then(|| Agent {
        name: name.to_string(),
        tokens,
        cert_names,
        servers,
        tools: tool_rules,
        prompts,
        resources,
        schema,
        rewrite: rewrites,
    })
}

/// `token_env` / `token_sha256` of an agent or operator, as digests.
fn tokens(cx: &mut Ctx, t: &mut Table) -> Vec<TokenDigest> {
    let mut tokens = vec![];
    if let Some(var) = t.string(cx, "token_env") {
        match (cx.env)(&var) {
            Some(tok) if tok.len() >= 16 => tokens.push(TokenDigest::of(&tok)),
            Some(_) => cx.err(
                &t.at("token_env"),
                format!("the token in `{var}` is too short (at least 16 characters)"),
            ),
            None => cx.err(
                &t.at("token_env"),
                format!("environment variable `{var}` is not set"),
            ),
        }
    }
    if let Some(hex) = t.string(cx, "token_sha256") {
        match parse_hex32(&hex) {
            Some(d) => tokens.push(TokenDigest(d)),
            None => cx.err(
                &t.at("token_sha256"),
                "expected 64 hex digits (the SHA-256 of the token)",
            ),
        }
    }
    tokens
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {

    /// The configuration reference in README.md names every key the parser accepts: adding a
    /// key without documenting it fails here, so the reference cannot drift from the code.
    #[test]
    fn readme_documents_every_config_key() {
        let readme = include_str!("../../README.md");
        let mut missing = vec![];
        for (section, keys) in [
            ("top", super::TOP_KEYS),
            ("proxy", super::PROXY_KEYS),
            ("proxy.tls", super::TLS_KEYS),
            ("upstreams.*.tls", super::UPSTREAM_TLS_KEYS),
            ("upstreams.*", super::UPSTREAM_KEYS),
            ("upstreams.*.limits", super::LIMIT_KEYS),
            ("tools rewrite", super::REWRITE_KEYS),
            ("agents.*", super::AGENT_KEYS),
            ("agents.*.tools", super::AGENT_TOOL_KEYS),
            ("rules", super::RULE_KEYS),
            ("operators.*", super::OPERATOR_KEYS),
            ("approvals", super::APPROVAL_KEYS),
            ("approvals.require", super::REQUIRE_KEYS),
            ("approvals.webhooks", super::WEBHOOK_KEYS),
        ] {
            for k in keys {
                let quoted = format!("`{k}`");
                let assigned = format!("{k} =");
                let dotted = format!(".{k}");
                if !(readme.contains(&quoted)
                    || readme.contains(&assigned)
                    || readme.contains(&dotted))
                {
                    missing.push(format!("{section}: {k}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "README.md does not document: {missing:?}"
        );
    }
    use super::super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "TOKEN" => Some("s3cret".into()),
            "HOME_DIR" => Some("/home/x".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, &env)
    }

    #[test]
    fn mcp_servers_shape_parses() {
        let c = parse(
            r#"
            [upstreams.everything]
            command = "npx"
            args = ["-y", "@modelcontextprotocol/server-everything", "stdio"]
            env = { API_KEY = "${TOKEN}" }

            [upstreams.remote]
            url = "http://127.0.0.1:9000/mcp"
            headers = { Authorization = "Bearer ${TOKEN}" }
            "#,
        )
        .unwrap();
        assert_eq!(c.upstreams.len(), 2);
        let Transport::Stdio(s) = &c.upstreams[0].transport else {
            panic!()
        };
        assert_eq!(s.env["API_KEY"].expose(), "s3cret");
        assert_eq!(c.upstreams[0].namespace.as_deref(), Some("everything"));
        let Transport::Http(h) = &c.upstreams[1].transport else {
            panic!()
        };
        assert_eq!(h.headers[0].1.expose(), "Bearer s3cret");
        assert_eq!(h.flavor, HttpFlavor::Auto);
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets leak through Debug"
        );
    }

    #[test]
    fn single_upstream_is_not_namespaced() {
        let c = parse("[upstreams.a]\ncommand = \"x\"\n").unwrap();
        assert_eq!(c.upstreams[0].namespace, None);
        let c = parse("[upstreams.a]\ncommand = \"x\"\nnamespace = \"aa\"\n").unwrap();
        assert_eq!(c.upstreams[0].namespace.as_deref(), Some("aa"));
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let errs = parse(
            r#"
            [proxy]
            listen = "nope"
            max_body_bytes = "big"
            [upstreams.a]
            comand = "x"
            [upstreams.b]
            command = "y"
            args = ["ok", 3]
            env = { K = "${MISSING}" }
            [upstreams.c]
            url = "ftp://x"
            headers = { "Bad Header" = "v" }
            [upstreams."bad name"]
            command = "z"
            [upstreams.d]
            url = "http://127.0.0.1:1/mcp"
            tls = { cert = "client.pem", sni = "x" }
            [upstreams.e]
            command = "w"
            tls = { ca = "ca.pem" }
            [extra]
            "#,
        )
        .unwrap_err();
        let text = errs.to_string();
        for want in [
            "proxy.listen: `nope` is not an address",
            "proxy.max_body_bytes: expected an integer, found a string",
            "upstreams.a.comand: unknown key (did you mean `command`?)",
            "upstreams.a: missing `command`",
            "upstreams.b.args[1]: expected a string, found an integer",
            "upstreams.b.env.K: environment variable `MISSING` is not set",
            "upstreams.c.url: must be an http:// or https:// URL",
            "upstreams.c.headers.\"Bad Header\": not a valid HTTP header name",
            "upstreams.\"bad name\": upstream names are",
            "extra: unknown key",
            "upstreams.d.tls: a client certificate needs both `cert` and `key`",
            "upstreams.d.tls: only for an https:// `url`",
            "upstreams.d.tls.sni: unknown key",
            "upstreams.e.tls: only valid for HTTP upstreams",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn dollar_escapes_and_bad_references() {
        let c = parse(
            "[upstreams.a]\ncommand = \"x\"\nargs = [\"$$HOME\", \"${HOME_DIR}/y\", \"a$b\"]\n",
        )
        .unwrap();
        let Transport::Stdio(s) = &c.upstreams[0].transport else {
            panic!()
        };
        assert_eq!(s.args, vec!["$HOME", "/home/x/y", "a$b"]);
        let e = parse("[upstreams.a]\ncommand = \"${1X}\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid variable reference"), "{e}");
        let e = parse("[upstreams.a]\ncommand = \"${X\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unterminated"), "{e}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let e = parse("[upstreams.a\ncommand=").unwrap_err().to_string();
        assert!(e.starts_with("invalid TOML"), "{e}");
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("no upstream servers configured"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }
    }
}
