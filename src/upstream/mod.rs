//! Connections to upstream MCP servers.
//!
//! Every transport (a supervised stdio child, Streamable HTTP, legacy HTTP+SSE) is reduced to the
//! same duplex pipe of JSON-RPC messages ([`Pipe`]). On top of it, [`Connection`] does what is
//! common: the MCP handshake, its own request ids (so that ids are unique per upstream whatever
//! the agents send), the table of pending requests, and failing every one of them at once when
//! the transport ends.
//!
//! Must not: know about agents, sessions or policy. Messages that are not responses to our own
//! requests go to the owner through the event channel.

mod http;
pub(crate) mod oauth;
pub mod oauth_login;
pub mod oauth_store;
mod sse_legacy;
mod stdio;
mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::config::{HttpFlavor, Transport, Upstream as UpstreamConfig};
use crate::jsonrpc::{self, Kind, Message};
use crate::mcp;
use crate::util::lock;

/// A message from an upstream that is not a response to one of our requests.
#[derive(Debug)]
pub struct Inbound {
    pub msg: Message,
    /// The upstream-side id of our request on whose response stream this arrived (Streamable
    /// HTTP tells us; stdio cannot).
    pub related: Option<u64>,
}

/// What every transport provides: the sender of outgoing messages, and optionally a direct
/// way to send one from the caller's own task. What it reads, it hands to its [`Inlet`].
pub(crate) struct Pipe {
    pub tx: mpsc::Sender<Message>,
    /// Sends one message and resolves once the transport is done with it (for Streamable
    /// HTTP: the POST's response has been read and delivered). Used instead of `tx` so that a
    /// call makes its HTTP request from its own task: no queue, no task in between.
    pub direct: Option<Direct>,
}

pub(crate) type Direct =
    Arc<dyn Fn(Message) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// Where a transport delivers what it reads. Answers to our requests go straight to their
/// waiter and everything else to the owner's event handler: inline, in arrival order, with no
/// task in between (each hop between tasks costs a wake-up per message). Clones are held by the
/// transport's tasks; when the last one is dropped (the transport ended), every pending request
/// fails at once and the owner hears [`Event::Closed`].
#[derive(Clone)]
pub(crate) struct Inlet(Arc<InletGuard>);

struct InletGuard(Arc<Dispatch>);

struct Dispatch {
    name: Arc<str>,
    pending: Pending,
    alive: AtomicBool,
    events: EventHandler,
    /// Set when the [`Connection`] is dropped: nothing more is delivered to its owner, and
    /// transports stop reading.
    detached: tokio::sync::watch::Sender<bool>,
    /// Set once a [`Connection`] owns this: a transport that fails before that (a command that
    /// cannot start) ends without a `Closed` event — its start error says it all.
    owned: AtomicBool,
    /// The `x-mcp-header` annotations of the server's tools, by tool name, as its last
    /// `tools/list` said: an HTTP transport sends those arguments as `Mcp-Param-*` headers.
    header_params: Mutex<HashMap<String, Vec<mcp::header_params::HeaderParam>>>,
}

impl Inlet {
    /// The `x-mcp-header` annotations of the server's tool `tool` (none for most tools).
    pub(crate) fn header_params(&self, tool: &str) -> Option<Vec<mcp::header_params::HeaderParam>> {
        let params = lock(&self.0 .0.header_params);
        if params.is_empty() {
            return None;
        }
        params.get(tool).cloned()
    }

    /// Delivers one message. Returns false once the connection is gone (the transport should
    /// stop reading).
    pub(crate) fn deliver(&self, inbound: Inbound) -> bool {
        let d = &self.0 .0;
        if *d.detached.borrow() {
            return false;
        }
        if inbound.msg.kind() == Kind::Response {
            let id = inbound.msg.id_str().and_then(|s| s.parse::<u64>().ok());
            let waiter = id.and_then(|id| lock(&d.pending).remove(&id));
            match waiter {
                Some(w) => {
                    let _ = w.send(Ok(inbound.msg));
                }
                None => {
                    tracing::debug!(id = ?inbound.msg.id_str(), "response to no pending request (late or cancelled)")
                }
            }
            return true;
        }
        if inbound.msg.method() == Some("notifications/subscriptions/acknowledged") {
            // The acknowledgement of the connection's own `subscriptions/listen` on a
            // 2026-07-28 server: nothing for a session.
            return true;
        }
        (d.events)(Event::Message(inbound));
        true
    }

    /// Whether the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        *self.0 .0.detached.borrow()
    }

    /// Resolves when the connection is gone.
    pub(crate) async fn closed(&self) {
        let mut rx = self.0 .0.detached.subscribe();
        let _ = rx.wait_for(|gone| *gone).await;
    }
}

impl Drop for InletGuard {
    fn drop(&mut self) {
        let d = &self.0;
        d.alive.store(false, Ordering::Relaxed);
        let failed: Vec<_> = lock(&d.pending).drain().collect();
        for (_, w) in failed {
            let _ = w.send(Err(UpstreamError::Closed(d.name.to_string())));
        }
        if d.owned.load(Ordering::Relaxed) && !*d.detached.borrow() {
            tracing::warn!("upstream connection ended");
            crate::metrics::METRICS.upstream_ended(&d.name);
            (d.events)(Event::Closed {
                reason: "transport ended".into(),
            });
        }
    }
}

/// Called inline by the connection's reader for every message that is not an answer to one of
/// our requests, in arrival order: so a notification an upstream sends before its answer reaches
/// the agent before that answer.
pub type EventHandler = Arc<dyn Fn(Event) + Send + Sync>;

/// What the owner of a connection hears about it.
#[derive(Debug)]
pub enum Event {
    Message(Inbound),
    /// The transport ended (child exited, stream closed). Pending requests have been failed.
    Closed {
        reason: String,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {0} is not available")]
    Unavailable(String),
    #[error("upstream {0} closed the connection")]
    Closed(String),
    #[error("upstream {0} did not answer in time")]
    Timeout(String),
    #[error("upstream {name} failed to start: {reason}")]
    Start { name: String, reason: String },
    #[error("upstream {name} rejected initialize: {reason}")]
    Handshake { name: String, reason: String },
    /// An OAuth-protected upstream that nobody has signed mcp-warden in to (for this agent or
    /// person, when each signs in on their own): nothing was sent to it.
    #[error("upstream {name} is not signed in: {by}")]
    SignIn { name: String, by: SignInBy },
}

/// Who makes a missing upstream sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInBy {
    /// An operator, with this command (or from the approvals page).
    Operator(String),
    /// The person behind the call (`iss sub` of their identity provider sign-in), on
    /// mcp-warden's sign-in page; `None`: the caller is nobody in particular (a static token,
    /// stdio), so no sign-in can be theirs.
    Person(Option<std::sync::Arc<str>>),
}

impl std::fmt::Display for SignInBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignInBy::Operator(cmd) => write!(f, "run `{cmd}`"),
            SignInBy::Person(Some(_)) => write!(f, "each person signs in on mcp-warden's page"),
            SignInBy::Person(None) => write!(
                f,
                "each person signs in, and this caller is not signed in with the identity provider"
            ),
        }
    }
}

/// Stdio children currently alive (started and not yet reaped), for shutdown and tests.
static LIVE_CHILDREN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn live_children() -> usize {
    LIVE_CHILDREN.load(Ordering::Relaxed)
}

/// Waits until every stdio upstream child has exited, or `deadline` passes.
pub async fn wait_for_children(deadline: std::time::Duration) {
    let end = tokio::time::Instant::now() + deadline;
    while live_children() > 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Message, UpstreamError>>>>>;

/// An initialised connection to one upstream. Dropping it closes the transport (for stdio: the
/// child is asked to exit, then terminated).
pub struct Connection {
    name: Arc<str>,
    tx: mpsc::Sender<Message>,
    direct: Option<Direct>,
    dispatch: Arc<Dispatch>,
    next_id: AtomicU64,
    pub init: mcp::InitializeResult,
    /// Speaks 2026-07-28 (stateless): the `_meta` members every request carries (the protocol
    /// version, the client's capabilities and info), ready to insert.
    modern: Option<Arc<[(&'static str, String)]>>,
    /// On a 2026-07-28 server, the `subscriptions/listen` streams that stand for resource
    /// subscriptions: their ids, by URI.
    resource_listens: Mutex<HashMap<String, u64>>,
    /// What is sent without waiting ([`Connection::send_later`]), in order, by one task per
    /// connection (aborted with it).
    later: mpsc::Sender<Message>,
    _later: crate::task::Owned,
}

/// Messages queued by [`Connection::send_later`] before more are dropped.
const LATER: usize = 256;

impl Drop for Connection {
    fn drop(&mut self) {
        // The owner is done with it: no more events, and readers stop.
        self.dispatch.detached.send_replace(true);
    }
}

/// The `initialize` params mcp-warden sends upstream (the agent's own, with the negotiated
/// version).
#[derive(Clone)]
pub struct Handshake {
    /// The agent the connection acts for (keys per-agent upstream sign-ins); `None` for
    /// mcp-warden's own connections and the single user.
    pub principal: Option<std::sync::Arc<str>>,
    /// The person behind the caller (`iss sub` of an identity provider sign-in; keys
    /// per-person upstream sign-ins); `None` for anyone else.
    pub person: Option<std::sync::Arc<str>>,
    /// The caller's latest identity provider token, for token exchange.
    pub subject: Option<std::sync::Arc<crate::identity::SubjectCell>>,
    pub protocol_version: String,
    pub capabilities: Box<serde_json::value::RawValue>,
    pub client_info: Box<serde_json::value::RawValue>,
}

/// How long a server is given to answer `server/discover` alone before `initialize` is sent
/// as well (the specification: an error or a timeout means a 2025 server).
const DISCOVER_WAIT: Duration = Duration::from_secs(3);

/// How a server answered the first requests.
enum Hello {
    Modern(mcp::InitializeResult),
    Legacy(Result<Message, UpstreamError>),
}

/// `msg` with the envelope's members added to `params._meta` (those it does not carry already:
/// a 2026-07-28 agent's own capabilities and client info stay), creating `_meta` (and
/// `params`) when absent. The spans move; the message is not parsed again.
fn with_meta_members(msg: Message, envelope: &[(&'static str, String)]) -> Message {
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(rename = "_meta", borrow, default)]
        meta: Option<&'a serde_json::value::RawValue>,
    }
    let empty = |s: &str| s.get(1..).unwrap_or_default().trim_start().starts_with('}');
    let all = || {
        envelope
            .iter()
            .map(|(k, v)| format!(r#""{k}":{v}"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    match msg.params() {
        Some(params) if params.starts_with('{') => {
            match serde_json::from_str::<P<'_>>(params)
                .ok()
                .and_then(|p| p.meta)
            {
                Some(meta) if meta.get().starts_with('{') => {
                    let text = meta.get();
                    let present: std::collections::BTreeMap<
                        std::borrow::Cow<'_, str>,
                        &serde_json::value::RawValue,
                    > = serde_json::from_str(text).unwrap_or_default();
                    let members = envelope
                        .iter()
                        .filter(|(k, _)| !present.contains_key(*k))
                        .map(|(k, v)| format!(r#""{k}":{v}"#))
                        .collect::<Vec<_>>()
                        .join(",");
                    if members.is_empty() {
                        return msg;
                    }
                    let at = msg.span_of(text).start + 1;
                    let sep = if empty(text) { "" } else { "," };
                    msg.with_insert(at, &format!("{members}{sep}"))
                }
                // `_meta` that is not an object: left to the server to refuse.
                Some(_) => msg,
                None => {
                    let at = msg.span_of(params).start + 1;
                    let sep = if empty(params) { "" } else { "," };
                    msg.with_insert(at, &format!(r#""_meta":{{{}}}{sep}"#, all()))
                }
            }
        }
        Some(_) => msg,
        None => {
            // No params: added before the message's closing brace.
            let raw = msg.bytes();
            let Some(end) = raw.iter().rposition(|b| *b == b'}') else {
                return msg;
            };
            msg.with_insert(end, &format!(r#","params":{{"_meta":{{{}}}}}"#, all()))
        }
    }
}

impl Handshake {
    /// The `_meta` members (no braces) of a 2026-07-28 request made for this handshake's
    /// client: the version, its capabilities and info.
    fn modern_meta(&self) -> Vec<(&'static str, String)> {
        let version = mcp::MODERN_VERSIONS.last().copied().unwrap_or("2026-07-28");
        vec![
            (
                mcp::META_PROTOCOL_VERSION,
                serde_json::Value::String(version.to_string()).to_string(),
            ),
            (
                mcp::META_CLIENT_CAPABILITIES,
                self.capabilities.get().to_string(),
            ),
            (mcp::META_CLIENT_INFO, self.client_info.get().to_string()),
        ]
    }

    /// mcp-warden's own handshake (no client capabilities), for connections that no agent's
    /// `initialize` describes: shared upstreams (`mcp-warden`), readiness probes
    /// (`mcp-warden-probe`).
    pub fn own(client_name: &str) -> Handshake {
        let raw = |s: String| {
            serde_json::value::RawValue::from_string(s)
                .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
        };
        Handshake {
            principal: None,
            person: None,
            subject: None,
            protocol_version: crate::mcp::LATEST_VERSION.to_string(),
            capabilities: raw("{}".into()),
            client_info: raw(
                serde_json::json!({"name": client_name, "version": env!("CARGO_PKG_VERSION")})
                    .to_string(),
            ),
        }
    }

    fn request(&self, id: u64) -> Message {
        let params = format!(
            r#"{{"protocolVersion":{},"capabilities":{},"clientInfo":{}}}"#,
            serde_json::Value::String(self.protocol_version.clone()),
            self.capabilities.get(),
            self.client_info.get()
        );
        let raw =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{params}}}"#);
        Message::parse(Bytes::from(raw)).unwrap_or_else(|_| {
            jsonrpc::request(&id.to_string(), "initialize", serde_json::json!({}))
        })
    }
}

impl Dispatch {
    fn new(name: &str, events: EventHandler) -> (Arc<Dispatch>, Inlet) {
        let d = Arc::new(Dispatch {
            name: Arc::from(name),
            pending: Arc::default(),
            alive: AtomicBool::new(true),
            events,
            detached: tokio::sync::watch::Sender::new(false),
            owned: AtomicBool::new(false),
            header_params: Mutex::default(),
        });
        (d.clone(), Inlet(Arc::new(InletGuard(d))))
    }
}

impl Connection {
    /// Starts the transport and performs the MCP handshake.
    pub async fn connect(
        cfg: &UpstreamConfig,
        hs: &Handshake,
        max_line: usize,
        events: EventHandler,
    ) -> Result<Connection, UpstreamError> {
        let span = tracing::info_span!("upstream", upstream = %cfg.name);
        async {
            match &cfg.transport {
                Transport::Stdio(spec) => {
                    let (dispatch, inlet) = Dispatch::new(&cfg.name, events);
                    let pipe = stdio::spawn(&cfg.name, spec, max_line, inlet).map_err(|e| {
                        UpstreamError::Start {
                            name: cfg.name.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    Self::handshake(cfg, hs, pipe, dispatch).await
                }
                Transport::Http(spec) => match spec.flavor {
                    HttpFlavor::Streamable => {
                        let (dispatch, inlet) = Dispatch::new(&cfg.name, events);
                        let pipe = http::spawn(&cfg.name, spec, inlet, hs)?;
                        Self::handshake(cfg, hs, pipe, dispatch).await
                    }
                    HttpFlavor::LegacySse => {
                        let (dispatch, inlet) = Dispatch::new(&cfg.name, events);
                        let pipe =
                            sse_legacy::spawn(&cfg.name, spec, cfg.startup_timeout, inlet).await?;
                        Self::handshake(cfg, hs, pipe, dispatch).await
                    }
                    HttpFlavor::Auto => {
                        let (dispatch, inlet) = Dispatch::new(&cfg.name, events.clone());
                        let pipe = http::spawn(&cfg.name, spec, inlet, hs)?;
                        match Self::handshake(cfg, hs, pipe, dispatch).await {
                            Err(UpstreamError::Handshake { reason, .. })
                                if reason.starts_with(http::LEGACY_HINT) =>
                            {
                                tracing::info!(
                                    "no Streamable HTTP endpoint; trying legacy HTTP+SSE"
                                );
                                let (dispatch, inlet) = Dispatch::new(&cfg.name, events);
                                let pipe =
                                    sse_legacy::spawn(&cfg.name, spec, cfg.startup_timeout, inlet)
                                        .await?;
                                Self::handshake(cfg, hs, pipe, dispatch).await
                            }
                            other => other,
                        }
                    }
                },
            }
        }
        .instrument(span)
        .await
        .inspect(|_| crate::metrics::METRICS.upstream_start(&cfg.name, "ok"))
        .inspect_err(|_| crate::metrics::METRICS.upstream_start(&cfg.name, "failed"))
    }

    async fn handshake(
        cfg: &UpstreamConfig,
        hs: &Handshake,
        pipe: Pipe,
        dispatch: Arc<Dispatch>,
    ) -> Result<Connection, UpstreamError> {
        dispatch.owned.store(true, Ordering::Relaxed);
        let (later, mut queued) = mpsc::channel::<Message>(LATER);
        let (tx, direct) = (pipe.tx.clone(), pipe.direct.clone());
        let span = tracing::debug_span!("upstream sends", upstream = %dispatch.name);
        let sender = crate::task::spawn(span, async move {
            while let Some(m) = queued.recv().await {
                match &direct {
                    Some(d) => d(m).await,
                    None => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut conn = Connection {
            name: dispatch.name.clone(),
            tx: pipe.tx,
            direct: pipe.direct,
            dispatch,
            next_id: AtomicU64::new(1),
            later,
            _later: sender,
            init: mcp::InitializeResult {
                protocol_version: String::new(),
                capabilities: Default::default(),
                server_info: None,
                instructions: None,
            },
            modern: None,
            resource_listens: Mutex::default(),
        };
        // A server is first asked whether it speaks 2026-07-28 (`server/discover`); one that
        // does is spoken to statelessly, anything else (an error, silence) gets `initialize`.
        // (Not over the legacy HTTP+SSE transport, which predates it.)
        let probe = match &cfg.transport {
            Transport::Stdio(_) => true,
            Transport::Http(spec) => spec.flavor != HttpFlavor::LegacySse,
        };
        let hello = if probe {
            conn.hello(hs, cfg.startup_timeout).await
        } else {
            let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
            Hello::Legacy(
                conn.send_request(id, hs.request(id), cfg.startup_timeout)
                    .await,
            )
        };
        let reply = match hello {
            Hello::Modern(init) => {
                tracing::info!(version = %init.protocol_version, "upstream speaks 2026-07-28");
                conn.modern = Some(Arc::from(hs.modern_meta()));
                conn.init = init;
                conn.listen_for_changes();
                return Ok(conn);
            }
            Hello::Legacy(reply) => reply,
        };
        let reply = reply.map_err(|e| match e {
            UpstreamError::Timeout(_) => UpstreamError::Start {
                name: cfg.name.clone(),
                reason: format!("no initialize answer within {:?}", cfg.startup_timeout),
            },
            other => other,
        })?;
        if let Some(err) = reply.error() {
            #[derive(serde::Deserialize)]
            struct E {
                message: String,
            }
            let reason = serde_json::from_str::<E>(err)
                .map(|e| e.message)
                .unwrap_or_else(|_| err.to_string());
            return Err(UpstreamError::Handshake {
                name: cfg.name.clone(),
                reason: crate::util::truncate(&reason, 300),
            });
        }
        let init: mcp::InitializeResult = reply
            .result()
            .and_then(|r| serde_json::from_str(r).ok())
            .ok_or_else(|| UpstreamError::Handshake {
                name: cfg.name.clone(),
                reason: "initialize result is malformed".into(),
            })?;
        if !mcp::is_supported(&init.protocol_version) {
            return Err(UpstreamError::Handshake {
                name: cfg.name.clone(),
                reason: format!("unsupported protocol version {:?}", init.protocol_version),
            });
        }
        tracing::info!(version = %init.protocol_version, "upstream initialised");
        conn.init = init;
        conn.notify(jsonrpc::notification("notifications/initialized", None))
            .await?;
        Ok(conn)
    }

    /// Which era the server speaks: `server/discover` first; a server that has not answered
    /// within [`DISCOVER_WAIT`] (a process still starting) is sent `initialize` too, and
    /// whichever answer says so decides — a late `DiscoverResult` wins over an `initialize`
    /// the server then refuses (a dual-era server locks its era on the first request).
    async fn hello(&self, hs: &Handshake, within: Duration) -> Hello {
        let discover = self.discover(hs, within);
        tokio::pin!(discover);
        let early = tokio::select! {
            d = &mut discover => Some(d),
            _ = tokio::time::sleep(DISCOVER_WAIT) => None,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match early {
            Some(Some(init)) => return Hello::Modern(init),
            Some(None) => {
                return Hello::Legacy(self.send_request(id, hs.request(id), within).await)
            }
            None => {}
        }
        tracing::debug!("no server/discover answer yet: sending initialize as well");
        let init = self.send_request(id, hs.request(id), within);
        tokio::pin!(init);
        tokio::select! {
            d = &mut discover => match d {
                Some(init) => Hello::Modern(init),
                None => Hello::Legacy(init.await),
            },
            r = &mut init => {
                let accepted = matches!(&r, Ok(m) if m.result().is_some());
                if accepted {
                    return Hello::Legacy(r);
                }
                match discover.await {
                    Some(init) => Hello::Modern(init),
                    None => Hello::Legacy(r),
                }
            }
        }
    }

    /// Asks a server whether it speaks 2026-07-28: its `DiscoverResult` as the connection's
    /// `init`, or `None` (an error, no answer within `within`, no modern version).
    async fn discover(&self, hs: &Handshake, within: Duration) -> Option<mcp::InitializeResult> {
        #[derive(serde::Deserialize)]
        struct Discover {
            #[serde(rename = "supportedVersions", default)]
            supported: Vec<String>,
            #[serde(default)]
            capabilities: serde_json::Map<String, serde_json::Value>,
            #[serde(default)]
            instructions: Option<String>,
            #[serde(rename = "_meta", default)]
            meta: serde_json::Map<String, serde_json::Value>,
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let probe = with_meta_members(
            jsonrpc::request(&id.to_string(), "server/discover", serde_json::json!({})),
            &hs.modern_meta(),
        );
        let reply = self
            .send_request(id, probe, within)
            .await
            .inspect_err(
                |e| tracing::debug!(error = %e, "server/discover not answered: 2025 handshake"),
            )
            .ok()?;
        let d: Discover = serde_json::from_str(reply.result()?).ok()?;
        let version = mcp::MODERN_VERSIONS
            .iter()
            .rev()
            .find(|v| d.supported.iter().any(|s| s == *v))?;
        Some(mcp::InitializeResult {
            protocol_version: (*version).to_string(),
            capabilities: d.capabilities,
            server_info: d.meta.get(mcp::META_SERVER_INFO).cloned(),
            instructions: d.instructions,
        })
    }

    /// A 2026-07-28 server announces list changes only on a `subscriptions/listen` stream:
    /// one is opened for the kinds it lists, for the connection's life (its notifications
    /// arrive like a 2025 server's).
    fn listen_for_changes(&self) {
        let mut kinds = serde_json::Map::new();
        for (cap, key) in [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ] {
            let listed = self
                .init
                .capabilities
                .get(cap)
                .and_then(|c| c.get("listChanged"))
                == Some(&serde_json::Value::Bool(true));
            if listed {
                kinds.insert(key.into(), serde_json::Value::Bool(true));
            }
        }
        if kinds.is_empty() {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let listen = jsonrpc::request(
            &id.to_string(),
            "subscriptions/listen",
            serde_json::json!({"notifications": kinds}),
        );
        self.send_later(self.envelope(listen));
    }

    /// 2026-07-28 has no `resources/subscribe`: on a server that speaks it, a subscription to a
    /// resource is a `subscriptions/listen` stream of its own (its updates arrive like a 2025
    /// server's), and unsubscribing ends that stream. Answered here; `None` for anything else.
    fn resource_subscription(&self, msg: &Message) -> Option<Message> {
        self.modern.as_ref()?;
        let subscribe = match msg.method()? {
            "resources/subscribe" => true,
            "resources/unsubscribe" => false,
            _ => return None,
        };
        let id = msg.id_str()?;
        let uri = msg
            .params()
            .and_then(|p| serde_json::from_str::<mcp::UriParams<'_>>(p).ok())
            .and_then(|p| mcp::raw_str(p.uri));
        let Some(uri) = uri else {
            return Some(jsonrpc::error_response(
                Some(id),
                jsonrpc::code::INVALID_PARAMS,
                "Invalid params: `uri` is required",
            ));
        };
        let mut listens = lock(&self.resource_listens);
        if subscribe {
            if !listens.contains_key(&uri) {
                let listen_id = self.next_id.fetch_add(1, Ordering::Relaxed);
                listens.insert(uri.clone(), listen_id);
                self.send_later(self.envelope(jsonrpc::request(
                    &listen_id.to_string(),
                    "subscriptions/listen",
                    serde_json::json!({"notifications": {"resourceSubscriptions": [uri]}}),
                )));
            }
        } else if let Some(listen_id) = listens.remove(&uri) {
            self.send_later(jsonrpc::notification(
                "notifications/cancelled",
                Some(serde_json::json!({"requestId": listen_id, "reason": "unsubscribed"})),
            ));
        }
        Some(jsonrpc::response(id, serde_json::json!({})))
    }

    /// A request as this connection's server must get it: with the 2026-07-28 envelope in
    /// `params._meta` when it speaks that revision; unchanged otherwise.
    fn envelope(&self, msg: Message) -> Message {
        match &self.modern {
            Some(members) if msg.kind() == Kind::Request => with_meta_members(msg, members),
            _ => msg,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_alive(&self) -> bool {
        self.dispatch.alive.load(Ordering::Relaxed) && !self.tx.is_closed()
    }

    /// Reads one tool of the server's `tools/list` for its `x-mcp-header` annotations: `false`
    /// when they are invalid (the specification: an HTTP client drops such a tool); valid
    /// ones are remembered for the calls of that tool.
    pub fn note_tool(&self, raw: &[u8]) -> bool {
        use mcp::header_params::{annotations, ANNOTATION};
        if memchr::memmem::find(raw, ANNOTATION.as_bytes()).is_none() {
            return true;
        }
        let Ok(tool) = serde_json::from_slice::<serde_json::Value>(raw) else {
            return true;
        };
        let name = tool["name"].as_str().unwrap_or_default().to_string();
        match annotations(&tool["inputSchema"]) {
            Ok(params) => {
                lock(&self.dispatch.header_params).insert(name, params);
                true
            }
            Err(why) => {
                tracing::warn!(upstream = %self.name, tool = %name, "tool dropped: invalid {ANNOTATION}: {why}");
                false
            }
        }
    }

    pub fn has_capability(&self, cap: &str) -> bool {
        self.init.capabilities.contains_key(cap)
    }

    /// Sends `msg` as a request under a fresh upstream id and waits for the answer, which comes
    /// back with the upstream id (the caller restores its own). Returns the id used, so that
    /// the caller can cancel it.
    /// Gives `msg` a fresh upstream id (so that ids are unique whatever the agents send) and
    /// returns both; [`Connection::request`] sends it. The answer comes back under our id; the
    /// caller restores its own, and can cancel ours.
    pub fn prepare(&self, msg: &Message) -> (u64, Message) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        (id, self.envelope(msg.with_id(&id.to_string())))
    }

    /// Sends `msg` as a request under a fresh upstream id and waits for the answer.
    pub fn start_request(
        &self,
        msg: &Message,
    ) -> (
        u64,
        impl std::future::Future<Output = Result<Message, UpstreamError>> + '_,
    ) {
        let (id, out) = self.prepare(msg);
        (id, self.request(id, out))
    }

    /// Sends `msg` (already under our id `id`) and waits for the answer, however long it takes
    /// (the caller times it). Kept small: it lives inside every forwarded call's task.
    pub async fn request(&self, id: u64, msg: Message) -> Result<Message, UpstreamError> {
        if let Some(answer) = self.resource_subscription(&msg) {
            return Ok(answer);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.dispatch.pending).insert(id, tx);
        // Removes the pending entry however this future ends (answer, timeout, or drop).
        let _guard = PendingGuard {
            pending: &self.dispatch.pending,
            id,
        };
        if let Some(direct) = &self.direct {
            // The transport delivers the answer (or an error standing for it) before this
            // resolves.
            direct(msg).await;
            return rx
                .await
                .unwrap_or_else(|_| Err(UpstreamError::Closed(self.name.to_string())));
        }
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                // Backpressure (the transport is behind): wait for room, off the common path.
                if Box::pin(self.tx.send(msg)).await.is_err() {
                    return Err(UpstreamError::Closed(self.name.to_string()));
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(UpstreamError::Closed(self.name.to_string()))
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(UpstreamError::Closed(self.name.to_string())))
    }

    async fn send_request(
        &self,
        id: u64,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, UpstreamError> {
        match tokio::time::timeout(timeout, self.request(id, msg)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(self.name.to_string())),
        }
    }

    /// Sends a request mcp-warden makes itself (e.g. `tools/list`) and returns the response.
    pub async fn call(
        &self,
        method: &str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> Result<Message, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = self.envelope(jsonrpc::request(&id.to_string(), method, params));
        self.send_request(id, msg, timeout).await
    }

    /// Sends a notification or a response (to a server→client request) as it is.
    pub async fn notify(&self, msg: Message) -> Result<(), UpstreamError> {
        if let Some(direct) = &self.direct {
            direct(msg).await;
            return Ok(());
        }
        self.tx
            .send(msg)
            .await
            .map_err(|_| UpstreamError::Closed(self.name.to_string()))
    }

    /// Sends a notification or a response without waiting: for callers that must not wait for
    /// a slow upstream. Bounded: when the upstream does not keep up, the message is dropped
    /// (and logged) rather than queued without end.
    pub fn send_later(&self, msg: Message) {
        match self.later.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(m)) => {
                tracing::warn!(upstream = %self.name, method = ?m.method(), "upstream is not reading what it is sent; message dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Tells the upstream that our request `id` is cancelled.
    pub async fn cancel(&self, id: u64, reason: &str) {
        let msg = jsonrpc::notification(
            "notifications/cancelled",
            Some(serde_json::json!({"requestId": id, "reason": reason})),
        );
        let _ = self.notify(msg).await;
    }
}

struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

/// What mcp-warden could not take from an upstream (a line over the limit, JSON nested too
/// deep) but could read the id of: an error answer under that id, so that the call waiting for
/// it fails now instead of at its timeout. `None` when there is nothing to answer (no id, or a
/// request or notification from the upstream).
pub(crate) fn unreadable_answer(id: Option<&str>, request: bool, why: &str) -> Option<Message> {
    let id = id.filter(|_| !request)?;
    let failure = crate::error::Failure::Unreadable {
        why: why.to_string(),
    };
    Some(failure.answer(
        Some(id),
        &"an upstream's answer could not be taken; the call fails",
    ))
}
