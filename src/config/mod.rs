//! Configuration: TOML text → validated, frozen [`Config`].
//!
//! Owns: reading the file, `${VAR}` expansion, checking every key (unknown keys are errors, with
//! a suggestion), and collecting *all* errors with their key paths before failing.
//!
//! Must not: start anything, or log secret values (expanded `env` and `headers` values are held
//! as [`Secret`]).

mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use validate::{loopback_host, secure_url, ConfigError, ConfigErrors};

/// The bundled quickstart config of a checkout, used when no `--config` is given and no
/// `mcp-warden.toml` exists in the working directory or the user's config directory.
pub const DEFAULT_CONFIG_PATH: &str = "proxy-config/quickstart.toml";

/// The config a binary carries, used when no config file is found at all (an installed
/// `mcp-warden` run anywhere): the quickstart, with the demo server looked up next to the
/// running binary (`cargo install` puts both in one directory), else on `PATH`.
pub const EMBEDDED_DEFAULT: &str = r#"[proxy]
listen = "127.0.0.1:8787"
path = "/mcp"

[upstreams.demo]
command = "mcp-warden-demo"
args = ["stdio"]
"#;

/// A value that must never reach logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from (for reloads and messages); `None` when built in code.
    pub source: Option<PathBuf>,
    pub proxy: ProxySettings,
    /// In the config's order, which is also the order of namespacing and collision handling.
    pub upstreams: Vec<Upstream>,
    /// Named agents, in config order. Empty: the single-user case (one local user sees every
    /// upstream); as soon as one is named, every caller is an agent and deny-by-default applies.
    pub agents: Vec<Arc<Agent>>,
    pub approvals: ApprovalSettings,
    /// People who may decide approvals remotely (`/control` on the HTTP listener).
    pub operators: Vec<Operator>,
    /// `[auth.oidc]`: HTTP callers identified by JWT access tokens of an identity provider.
    pub oidc: Option<Arc<OidcSettings>>,
    /// `[store]`: a PostgreSQL database shared by a fleet of replicas; `None`: the embedded
    /// SQLite database in the state directory.
    pub store: Option<Arc<StoreSettings>>,
}

/// `[store]`: approvals, decisions, grants and the audit log in PostgreSQL, shared by every
/// replica that names the same database (start-up only: a reload keeps the store it started
/// with).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The connection (`postgres://user:password@host:port/db?sslmode=require|disable`, with
    /// `${VAR}` expanded); the password inside stays redacted in every log and message.
    pub url: Secret,
    /// The database as logs may name it (`host:port/db`, no user or password).
    pub display: String,
    /// PEM CA certificates trusted for the database's TLS certificate instead of the web PKI.
    pub ca: Option<PathBuf>,
    /// The fleet's shared secret (from `secret_env`): the audit chain's key, the same on
    /// every replica so that one chain verifies.
    pub secret: Secret,
    pub pool_size: usize,
    /// How often a replica says it is alive.
    pub heartbeat: Duration,
    /// A replica silent this long is gone: the approvals it held are closed as abandoned.
    pub lapse: Duration,
}

impl StoreSettings {
    /// Whether `other` names the same store with the same settings (a reload that changes
    /// them takes effect only at the next start).
    pub fn same_as(&self, other: &StoreSettings) -> bool {
        self.url.expose() == other.url.expose()
            && self.ca == other.ca
            && self.secret.expose() == other.secret.expose()
            && self.pool_size == other.pool_size
            && self.heartbeat == other.heartbeat
            && self.lapse == other.lapse
    }
}

/// `[auth.oidc]`: mcp-warden as an OAuth 2.1 resource server. A JWT access token issued by
/// `issuer` for `resource` identifies the caller; the agent is the one whose `match` its
/// claims satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcSettings {
    /// Compared exactly with the token's `iss` and the issuer's metadata.
    pub issuer: String,
    /// The canonical URL agents use for this endpoint: the audience every token must carry,
    /// and the `resource` of the protected resource metadata.
    pub resource: String,
    /// Where the signing keys are; `None`: from the issuer's metadata.
    pub jwks_uri: Option<String>,
    /// Signature algorithms accepted (asymmetric only).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Scopes every token must carry (advertised in the metadata and the challenges).
    pub scopes: Vec<String>,
    /// How long fetched keys are used before they are fetched again.
    pub jwks_refresh: Duration,
    /// mcp-warden's own client at the provider for people's browsers (`browser_client_id`):
    /// on its sign-in page a person proves who they are before signing in to an upstream
    /// for themselves (`per = "user"`).
    pub browser: Option<BrowserClient>,
}

/// A web client of mcp-warden's at the identity provider (authorization code with PKCE, its
/// redirect the front's `/oauth/callback`).
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserClient {
    pub client_id: String,
    /// `None`: a public client.
    pub client_secret: Option<Secret>,
}

/// One condition of an agent's `match`: the claim (a dotted path into nested objects) has one
/// of `values` (as a string, or as one element of an array of strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMatch {
    pub claim: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub name: String,
    pub tokens: Vec<TokenDigest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalSettings {
    /// Expiry of an approval whose envelope names none.
    pub default_expiry: Duration,
    /// No approval waits longer, whatever the envelope says.
    pub max_expiry: Duration,
    /// Progress notifications while a call waits (for agents that asked for progress).
    pub progress_interval: Duration,
    /// Operator rules: calls they match wait for a human *before* they are forwarded.
    pub require: Vec<RequireRule>,
    /// Signed notifications of approvals opening and closing, for chat bots and the like.
    pub webhooks: Vec<Webhook>,
    /// An OpenClaw gateway whose reviewers (and `/approve` in its chats) decide held calls.
    pub openclaw: Option<OpenClawChannel>,
    /// How long an allow-always grant lasts (`None`: until revoked).
    pub grant_ttl: Option<Duration>,
    /// Grants cover only calls with the approved arguments (else: any call of the tool).
    pub grant_per_arguments: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    /// HMAC-SHA256 key for the `X-Warden-Signature` header.
    pub secret: Secret,
}

/// `[approvals.openclaw]`: held calls become plugin approvals on an OpenClaw gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClawChannel {
    /// The gateway's WebSocket (`ws://` or `wss://`).
    pub url: String,
    /// The gateway's token (`gateway.auth.token`).
    pub token: Secret,
    /// How long connecting and opening an approval may take before the channel counts as
    /// unreachable (the call is then refused: fail closed).
    pub connect_timeout: Duration,
}

/// "Calls like these need a human's approval first". A call matches when every given field
/// matches (an absent field matches everything).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequireRule {
    /// Tool name globs (exposed or the upstream's own name), compiled at load.
    pub tools: Vec<crate::glob::Pattern>,
    /// Tool annotations that must be `true` (e.g. `destructiveHint`, `openWorldHint`); any one
    /// suffices.
    pub annotations: Vec<String>,
    /// Agents the rule applies to (`user` names the single-user case); empty: all.
    pub agents: Vec<String>,
    /// Upstreams the rule applies to; empty: all.
    pub upstreams: Vec<String>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            default_expiry: Duration::from_secs(120),
            max_expiry: Duration::from_secs(600),
            progress_interval: Duration::from_secs(10),
            require: vec![],
            webhooks: vec![],
            openclaw: None,
            grant_ttl: None,
            grant_per_arguments: false,
        }
    }
}

/// A SHA-256 digest of a bearer token: the config (and memory) never needs the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest(pub [u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<token digest>")
    }
}

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        use sha2::Digest;
        TokenDigest(sha2::Sha256::digest(token.as_bytes()).into())
    }
}

/// Allow and deny patterns (exact names and `*`/`?` globs). Deny wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub allow: Vec<crate::glob::Pattern>,
    pub deny: Vec<crate::glob::Pattern>,
}

/// How one tool is presented: per upstream (keyed by the upstream's own name) or per agent
/// (keyed by the exposed name). See `policy::rewrite`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolRewrite {
    pub rename: Option<String>,
    pub description: Option<String>,
    pub title: Option<String>,
    /// Merged key by key over the upstream's annotations.
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// Arguments the proxy sets on every call; removed from the advertised schema (and required).
    pub pin: serde_json::Map<String, serde_json::Value>,
    /// Optional parameters hidden from the agent (removed from the schema; an agent sending one is refused).
    pub hide: Vec<String>,
}

/// Which provider's tool-schema rules exposed schemas must follow (see `policy::schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaProfile {
    Passthrough,
    Anthropic,
    OpenAi,
}

impl SchemaProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaProfile::Passthrough => "passthrough",
            SchemaProfile::Anthropic => "anthropic",
            SchemaProfile::OpenAi => "openai",
        }
    }
}

impl std::fmt::Display for SchemaProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown schema profile `{0}` (expected one of: passthrough, anthropic, openai)")]
pub struct UnknownProfile(pub String);

impl std::str::FromStr for SchemaProfile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passthrough" => Ok(SchemaProfile::Passthrough),
            "anthropic" => Ok(SchemaProfile::Anthropic),
            "openai" => Ok(SchemaProfile::OpenAi),
            other => Err(UnknownProfile(other.to_string())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    /// Bearer tokens that identify this agent over HTTP.
    pub tokens: Vec<TokenDigest>,
    /// DNS names (SANs) of TLS client certificates that identify this agent (mTLS).
    pub cert_names: Vec<String>,
    /// With `[auth.oidc]`: a token whose claims meet every condition identifies this agent.
    pub claims: Vec<ClaimMatch>,
    /// With `[auth.oidc]`: scopes this agent's tokens must carry besides the endpoint's.
    pub scopes: Vec<String>,
    /// Upstreams this agent may use at all; `None`: every upstream.
    pub servers: Option<Vec<String>>,
    pub tools: Rules,
    /// `None`: every prompt of its servers.
    pub prompts: Option<Rules>,
    /// `None`: every resource of its servers.
    pub resources: Option<Rules>,
    pub schema: Option<SchemaProfile>,
    /// Keyed by exposed name.
    pub rewrite: std::collections::BTreeMap<String, std::sync::Arc<ToolRewrite>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// PEM certificate chain (re-read when the file changes).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates: enables mTLS.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse connections without a valid client certificate.
    pub require_client_cert: bool,
}

/// How HTTP callers must identify themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A bearer token (an agent's, or in the single-user case the one generated at start).
    Required,
    /// No credential (single-user case only, loopback listener only): for local experiments
    /// and test suites that cannot send headers.
    None,
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub listen: SocketAddr,
    pub path: String,
    /// Extra `Host` header values accepted besides the listener's own loopback names.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted besides loopback origins.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub max_line_bytes: usize,
    pub session_idle_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub server_name: String,
    /// Tools per `tools/list` page towards the agent (0: everything in one page).
    pub page_size: usize,
    /// Open HTTP sessions one caller (agent, or the single user) may have.
    pub max_sessions_per_agent: usize,
    /// Requests one session may have in flight at once.
    pub max_inflight_per_session: usize,
    /// A client must send its request headers within this time (slowloris defence).
    pub header_read_timeout: Duration,
    /// Set at start by `--dangerously-allow-insecure-remote` (not a config key): reported by
    /// `/readyz` as a warning.
    pub insecure_remote: bool,
    /// How the HTTP front answers a POSTed request.
    pub response_mode: ResponseMode,
    /// In `auto` mode: how long a request's answer may take and still be sent as plain JSON.
    pub stream_after: Duration,
    /// Runtime threads for `serve`: 1 (a single thread), N, or 0 (one per core). Start-up only.
    pub worker_threads: usize,
    /// How long `initialize` waits for upstreams before answering with those that are up.
    pub initialize_wait: Duration,
    pub auth: AuthMode,
    /// Single user over HTTP: keep the generated token in the state directory across restarts
    /// (off: a new one every start, nothing secret persists unless asked).
    pub keep_token: bool,
    /// TLS for the HTTP front (and mTLS when a client CA is given).
    pub tls: Option<TlsSettings>,
    /// The origin agents and browsers reach the front by (`[proxy] public_url`), for the URLs
    /// mcp-warden hands out; `None`: the request's own `Host`.
    pub public_url: Option<String>,
    /// Where generated secrets and state live (`None`: `$XDG_STATE_HOME/mcp-warden` or
    /// `~/.local/state/mcp-warden`).
    pub state_dir: Option<PathBuf>,
}

impl ProxySettings {
    /// The front's origin for the URLs mcp-warden hands out (the approvals page, its OAuth
    /// redirect): `public_url` when set; else as this client reached it (`scheme://host`): the
    /// request's `Host`, which the front checked against `allowed_hosts` before any route
    /// ran, and `https` when the front serves TLS.
    pub fn origin(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        if let Some(u) = &self.public_url {
            return Some(u.clone());
        }
        let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Some(format!("{scheme}://{host}"))
    }
}

/// How the Streamable HTTP front answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// JSON when the answer is ready within `stream_after` and nothing related came first;
    /// otherwise an SSE stream (slow calls carry their progress as they go).
    Auto,
    /// An SSE stream (what the reference SDK servers do): related progress, logging and
    /// server→client requests travel on it, and 2025-11-25 clients get a priming event.
    Sse,
    /// A single JSON body; related messages go to the session's GET stream instead.
    Json,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            path: "/mcp".into(),
            allowed_hosts: vec![],
            allowed_origins: vec![],
            max_body_bytes: 1024 * 1024,
            max_line_bytes: 16 * 1024 * 1024,
            // Clients that never send DELETE (most) would keep one child per upstream per session
            // alive this long; an open GET stream or a call in flight is not idleness.
            session_idle_timeout: Duration::from_secs(5 * 60),
            request_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
            server_name: "mcp-warden".into(),
            page_size: 0,
            max_sessions_per_agent: 64,
            max_inflight_per_session: 128,
            header_read_timeout: Duration::from_secs(10),
            insecure_remote: false,
            response_mode: ResponseMode::Auto,
            stream_after: Duration::from_millis(100),
            worker_threads: 1,
            initialize_wait: Duration::from_secs(20),
            auth: AuthMode::Required,
            keep_token: false,
            tls: None,
            public_url: None,
            state_dir: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub transport: Transport,
    /// Prefix for exposed tool and prompt names (`<prefix>__tool`); `None`: names unchanged.
    pub namespace: Option<String>,
    pub startup_timeout: Duration,
    /// Off: the upstream is configured but not started.
    pub enabled: bool,
    /// One connection (one child) for every session instead of one per session.
    pub shared: bool,
    /// Presentation of this upstream's tools for every agent, keyed by the upstream's own name.
    pub tools: std::collections::BTreeMap<String, std::sync::Arc<ToolRewrite>>,
    pub schema: Option<SchemaProfile>,
    /// What happens when a tool's definition differs from its pinned one.
    pub on_tool_change: ToolChange,
    /// Consent envelopes from this upstream are held for a human (default on).
    pub consent: bool,
    /// `/readyz` answers 503 until this upstream has completed a handshake (probed at start
    /// and every 30 s).
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChange {
    /// Log the change; keep serving the tool.
    Warn,
    /// Log the change and hide the tool until an operator accepts the new definition.
    Block,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Stdio(StdioSpec),
    Http(HttpSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StdioSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, Secret>,
    pub cwd: Option<PathBuf>,
    /// Environment variables passed through from mcp-warden's own environment by name.
    pub inherit_env: Vec<String>,
    /// Resource limits for the child (applied with util-linux `prlimit`, which execs it).
    pub limits: Option<Limits>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    /// Address space, MiB.
    pub memory_mb: Option<u64>,
    /// CPU time, seconds.
    pub cpu_secs: Option<u64>,
    pub open_files: Option<u64>,
    /// Processes/threads of the child's user.
    pub processes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFlavor {
    /// Streamable HTTP (2025-03-26 and later).
    Streamable,
    /// The deprecated HTTP+SSE transport (2024-11-05).
    LegacySse,
    /// Try Streamable HTTP; fall back to legacy SSE as the spec's compatibility section says.
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub url: String,
    pub headers: Vec<(String, Secret)>,
    pub flavor: HttpFlavor,
    /// `[upstreams.NAME.tls]`: how an `https://` upstream is verified and whom we present.
    pub tls: Option<UpstreamTls>,
    /// `oauth = { … }`: mcp-warden obtains the upstream's access tokens itself.
    pub oauth: Option<UpstreamOAuth>,
}

/// An OAuth-protected upstream: mcp-warden is the OAuth client. The authorization server is
/// found as the MCP authorization specification says (the upstream's protected resource
/// metadata, then the server's own metadata); tokens are asked for this upstream's URL
/// (`resource`, RFC 8707) and sent to nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamOAuth {
    pub grant: OAuthGrant,
    /// A client registered at the authorization server for mcp-warden (required for client
    /// credentials; otherwise mcp-warden registers itself when the server allows it).
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// The authorization server mcp-warden's client belongs to: when set, an upstream naming
    /// another one is refused (its secret, codes and callers' tokens go nowhere else).
    pub issuer: Option<String>,
    /// The https URL of mcp-warden's client ID metadata document (served by the HTTP front at
    /// that URL's path): the client id where the authorization server takes URL client ids.
    pub client_metadata_url: Option<String>,
    /// Scopes to ask for; empty: the upstream's challenge, else its metadata's
    /// `scopes_supported`.
    pub scopes: Vec<String>,
    /// Where signed-in tokens are kept (sealed): `<state dir>/oauth`.
    pub store: PathBuf,
    /// Whose sign-in a call uses: one for everyone, each agent's (`auth login NAME --agent
    /// A`), or each person's (signed in with `[auth.oidc]`, who signs in themselves).
    pub per: GrantPer,
    /// Token exchange: the `[auth.oidc]` issuer, the only authorization server a caller's token
    /// may be sent to.
    pub exchange_issuer: Option<String>,
}

/// Whose sign-in an authorization code upstream's calls go out under (`per`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantPer {
    /// One sign-in serves every caller.
    Upstream,
    /// Each agent has its own, made by an operator.
    Agent,
    /// Each person behind an agent (their `[auth.oidc]` identity) has their own, which they
    /// make themselves on mcp-warden's sign-in page.
    Person,
}

impl UpstreamOAuth {
    /// The key of the sealed grant for upstream `name` (`spec.key(name)`) acting for `agent`,
    /// or for `person` (an identity provider's `iss sub`). `None`: a per-person upstream and
    /// a caller who is nobody in particular (a static token, stdio): no grant can be theirs.
    pub fn grant_key(
        &self,
        upstream_key: &str,
        agent: Option<&str>,
        person: Option<&str>,
    ) -> Option<String> {
        match self.per {
            GrantPer::Upstream => Some(upstream_key.to_string()),
            GrantPer::Agent => Some(format!("{upstream_key}+{}", agent.unwrap_or("user"))),
            GrantPer::Person => {
                use sha2::Digest;
                let d = sha2::Sha256::digest(person?.as_bytes());
                let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
                Some(format!("{upstream_key}+p-{hex}"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthGrant {
    /// mcp-warden is a machine client with its own secret.
    ClientCredentials,
    /// An operator signs in once (`mcp-warden auth login`); the refresh token keeps it going.
    AuthorizationCode,
    /// RFC 8693: the identity provider trades the caller's own access token ([auth.oidc]) for
    /// one meant for this upstream; mcp-warden authenticates as its own client.
    TokenExchange,
}

impl HttpSpec {
    /// The upstream's key (see [`Upstream::pin_key`]): its name and a digest of its URL.
    pub fn key(&self, name: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"http");
        h.update(self.url.as_bytes());
        keyed(name, h)
    }
}

/// `name@<12 hex digits of the digest>`.
fn keyed(name: &str, h: sha2::Sha256) -> String {
    use sha2::Digest;
    let id: String = h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{name}@{id}")
}

/// TLS towards an HTTPS upstream. Without it, the upstream's certificate is checked against
/// the web PKI roots and no client certificate is sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpstreamTls {
    /// PEM CA certificates trusted for this upstream *instead of* the web PKI roots.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain and private key presented to the upstream (mutual TLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Upstream {
    /// What tool pins are kept under: the name and a digest of what identifies the server (its
    /// command line, or its URL). Several configs share one state directory by default, and an
    /// `[upstreams.files]` in one config is not the same server as in another: keyed by name
    /// alone, unrelated servers raised false rug-pull warnings.
    pub fn pin_key(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        match &self.transport {
            Transport::Stdio(s) => {
                h.update(b"stdio");
                for part in std::iter::once(&s.command).chain(&s.args) {
                    h.update((part.len() as u64).to_be_bytes());
                    h.update(part.as_bytes());
                }
                keyed(&self.name, h)
            }
            Transport::Http(spec) => spec.key(&self.name),
        }
    }

    /// Whether a running connection made for `self` can keep serving `other`: same transport,
    /// same sharing. (Names, rewrites, schema profile and pin policy change without a restart.)
    pub fn same_connection(&self, other: &Upstream) -> bool {
        self.transport == other.transport
            && self.shared == other.shared
            && self.enabled == other.enabled
    }
}

impl Config {
    /// Reads and validates a config file. All problems are reported together.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let mut cfg = Config::parse(&text, &|k| std::env::var(k).ok())?;
        cfg.source = Some(path.to_path_buf());
        // Relative paths in a config file mean "relative to the file", so a config works from
        // any working directory. A bare command name (`npx`) is still looked up on PATH.
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = std::path::absolute(&base).unwrap_or(base);
        if let Some(t) = &mut cfg.proxy.tls {
            t.cert = resolve(&base, &t.cert);
            t.key = resolve(&base, &t.key);
            t.client_ca = t.client_ca.as_ref().map(|c| resolve(&base, c));
        }
        for u in &mut cfg.upstreams {
            if let Transport::Http(HttpSpec { tls: Some(t), .. }) = &mut u.transport {
                for p in [&mut t.ca, &mut t.cert, &mut t.key].into_iter().flatten() {
                    *p = resolve(&base, p);
                }
            }
            if let Transport::Stdio(s) = &mut u.transport {
                if s.command.contains('/') && Path::new(&s.command).is_relative() {
                    s.command = base.join(&s.command).display().to_string();
                }
                // An argument naming a file next to the config (`server.py`, `./dist/index.js`)
                // means that file, wherever mcp-warden is started from. Options, URLs and
                // anything else (`stdio`, `.`, a path that is not a file there) pass unchanged.
                for a in &mut s.args {
                    let p = Path::new(a.as_str());
                    if !a.starts_with('-') && !a.contains("://") && p.is_relative() {
                        let there = base.join(p);
                        if there.is_file() {
                            *a = there.display().to_string();
                        }
                    }
                }
                if let Some(cwd) = &s.cwd {
                    if cwd.is_relative() {
                        s.cwd = Some(base.join(cwd));
                    }
                }
            }
        }
        Ok(cfg)
    }

    /// The config at `path`, or without one the default file ([`default_config_path`]), or
    /// the binary's own default.
    pub fn load_or_default(path: Option<PathBuf>) -> Result<Config, ConfigErrors> {
        Config::load_from(path.or_else(default_config_path).as_deref())
    }

    /// The config at `path` once it is resolved ([`default_config_path`]): `None` is the
    /// binary's own default.
    pub fn load_from(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        match path {
            Some(p) => Config::load(p),
            None => Config::embedded_default(),
        }
    }

    /// [`EMBEDDED_DEFAULT`], its commands found next to the running binary when they are there.
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        let mut cfg = Config::parse(EMBEDDED_DEFAULT, &|k| std::env::var(k).ok())?;
        let here = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf));
        for u in &mut cfg.upstreams {
            if let (Transport::Stdio(s), Some(dir)) = (&mut u.transport, &here) {
                let sibling = dir.join(&s.command);
                if sibling.is_file() {
                    s.command = sibling.display().to_string();
                }
            }
        }
        Ok(cfg)
    }

    /// The state directory of the config at `path` (or of the default one), read without
    /// validating the rest (operator commands need nothing else from it).
    pub fn state_dir_for(path: Option<PathBuf>) -> PathBuf {
        match path.or_else(default_config_path) {
            Some(p) => Config::state_dir_of(&p),
            None => Config::state_dir_or_default(None),
        }
    }

    /// Parses config text; `env` resolves `${VAR}` references.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        validate::parse(text, env)
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    pub fn agent(&self, name: &str) -> Option<&Arc<Agent>> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The state directory a config file names, without validating the rest of it (operator
    /// commands such as `approve` need only this, not the upstreams' secrets).
    pub fn state_dir_of(path: &Path) -> PathBuf {
        let named = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| {
                t.get("proxy")?
                    .get("state_dir")?
                    .as_str()
                    .map(PathBuf::from)
            });
        Config::state_dir_or_default(named)
    }

    /// The state directory to use.
    pub fn state_dir(&self) -> PathBuf {
        Config::state_dir_or_default(self.proxy.state_dir.clone())
    }

    fn state_dir_or_default(named: Option<PathBuf>) -> PathBuf {
        if let Some(d) = named {
            return d;
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("mcp-warden")
    }
}

/// Where to read the config when `--config` is not given: `./mcp-warden.toml` if present, else
/// the bundled quickstart.
/// The config file used without `--config`: `./mcp-warden.toml`, then
/// `$XDG_CONFIG_HOME/mcp-warden/mcp-warden.toml` (`~/.config/…`), then a checkout's quickstart;
/// `None`: none exists, and the binary's own default ([`EMBEDDED_DEFAULT`]) is used.
pub fn default_config_path() -> Option<PathBuf> {
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("mcp-warden/mcp-warden.toml"));
    [
        Some(PathBuf::from("mcp-warden.toml")),
        user,
        Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// Paths relative to the config file.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_relative() {
        base.join(p)
    } else {
        p.to_path_buf()
    }
}
