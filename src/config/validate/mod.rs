//! The config validator: the checking walk over the parsed TOML table, one file per section. Written by hand rather than with
//! `#[serde(deny_unknown_fields)]` so that *every* error is reported at once, each with its key
//! path and, for a typo, the key that was probably meant.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod agent;
mod approvals;
mod auth;
mod proxy;
mod store;
mod tools;
mod upstream;

use agent::agent;
pub use auth::{loopback_host, secure_url};
use proxy::proxy_settings;
use upstream::upstream;

use super::{
    Agent, ApprovalSettings, AuthMode, Config, HttpFlavor, HttpSpec, Operator, ProxySettings,
    ResponseMode, Rules, SchemaProfile, Secret, StdioSpec, TokenDigest, ToolChange, ToolRewrite,
    Transport, Upstream,
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

    /// Reports every key that was not read, suggesting the closest known one. `known` is the
    /// section's one list of keys (what the README must document); reading a key it does not
    /// list is a bug caught by every test that parses that section.
    fn finish(self, cx: &mut Ctx, known: &[&'static str]) {
        debug_assert!(
            self.seen.iter().all(|k| known.contains(k)),
            "{}: keys read but not listed: {:?}",
            self.path,
            self.seen
                .iter()
                .filter(|k| !known.contains(k))
                .collect::<Vec<_>>()
        );
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

const TOP_KEYS: &[&str] = &[
    "proxy",
    "upstreams",
    "agents",
    "approvals",
    "operators",
    "auth",
    "store",
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
    let approvals = match top.table(&mut cx, "approvals") {
        Some(t) => approvals::approvals(&mut cx, t),
        None => ApprovalSettings::default(),
    };
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
    let oidc = top
        .table(&mut cx, "auth")
        .and_then(|t| auth::auth(&mut cx, t))
        .map(std::sync::Arc::new);
    for a in &agents {
        let p = join("agents", &a.name);
        if oidc.is_none() && !a.claims.is_empty() {
            cx.err(
                &format!("{p}.match"),
                "needs [auth.oidc] (the identity provider whose tokens it matches)",
            );
        }
        if oidc.is_none() && !a.scopes.is_empty() {
            cx.err(
                &format!("{p}.scopes"),
                "needs [auth.oidc] (scopes are those of its access tokens)",
            );
        }
    }
    // A token identifies one agent: two identical matches could never tell them apart.
    for (i, a) in agents.iter().enumerate() {
        for b in &agents[i + 1..] {
            if !a.claims.is_empty() && a.claims == b.claims {
                cx.err(
                    &format!("{}.match", join("agents", &b.name)),
                    format!("is the same as agent `{}`'s", a.name),
                );
            }
        }
    }
    if oidc.is_some() && !agents.iter().any(|a| !a.claims.is_empty()) {
        cx.err("auth.oidc", "no agent has a `match`: name the agents its tokens identify ([agents.NAME] match = { sub = \"…\" })");
    }
    let store = top
        .table(&mut cx, "store")
        .and_then(|t| store::store(&mut cx, t))
        .map(std::sync::Arc::new);
    let operators = match top.table(&mut cx, "operators") {
        Some(t) => approvals::operators(&mut cx, t),
        None => vec![],
    };
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
    // Signed-in upstream tokens live in the state directory; token exchange trades callers'
    // tokens at their own identity provider only.
    let oauth_store = super::Config::state_dir_or_default(proxy.state_dir.clone()).join("oauth");
    for u in &mut upstreams {
        if let Transport::Http(HttpSpec { oauth: Some(o), .. }) = &mut u.transport {
            o.store = oauth_store.clone();
            let browser = oidc.as_ref().is_some_and(|s| s.browser.is_some());
            if o.per == crate::config::GrantPer::Person && !browser {
                cx.err(
                    &format!("{}.oauth.per", join("upstreams", &u.name)),
                    "each person signs in on mcp-warden's page after proving who they are: it needs [auth.oidc] with `browser_client_id`",
                );
            }
            if o.grant == crate::config::OAuthGrant::TokenExchange {
                match &oidc {
                    Some(settings) => o.exchange_issuer = Some(settings.issuer.clone()),
                    None => cx.err(
                        &format!("{}.oauth", join("upstreams", &u.name)),
                        "token exchange trades the caller's identity provider token: it needs [auth.oidc]",
                    ),
                }
            }
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
            oidc,
            store,
        })
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

/// Marker for "namespace not given": resolved once all upstreams are known.
const DEFAULT_NS: &str = "\0default";

fn patterns(list: Vec<String>) -> Vec<crate::glob::Pattern> {
    list.into_iter().map(crate::glob::Pattern::new).collect()
}

fn to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
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
        let readme = include_str!("../../../README.md");
        let mut missing = vec![];
        for (section, keys) in [
            ("top", super::TOP_KEYS),
            ("proxy", super::proxy::PROXY_KEYS),
            ("proxy.tls", super::proxy::TLS_KEYS),
            ("upstreams.*.tls", super::upstream::UPSTREAM_TLS_KEYS),
            ("upstreams.*.oauth", super::upstream::UPSTREAM_OAUTH_KEYS),
            ("upstreams.*", super::upstream::UPSTREAM_KEYS),
            ("upstreams.*.limits", super::upstream::LIMIT_KEYS),
            ("tools rewrite", super::tools::REWRITE_KEYS),
            ("agents.*", super::agent::AGENT_KEYS),
            ("agents.*.tools", super::agent::AGENT_TOOL_KEYS),
            ("rules", super::agent::RULE_KEYS),
            ("operators.*", super::approvals::OPERATOR_KEYS),
            ("approvals", super::approvals::APPROVAL_KEYS),
            ("approvals.require", super::approvals::REQUIRE_KEYS),
            ("approvals.webhooks", super::approvals::WEBHOOK_KEYS),
            ("approvals.openclaw", super::approvals::OPENCLAW_KEYS),
            ("auth", super::auth::AUTH_KEYS),
            ("auth.oidc", super::auth::OIDC_KEYS),
            ("store", super::store::STORE_KEYS),
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
            [approvals.openclaw]
            url = "http://127.0.0.1:18789"
            token_env = "NO_SUCH_VAR"
            conect_timeout_secs = 5
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
            "approvals.openclaw.url: must be a ws:// or wss:// URL",
            "approvals.openclaw.conect_timeout_secs: unknown key (did you mean `connect_timeout_secs`?)",
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
