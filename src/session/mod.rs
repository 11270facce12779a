//! A downstream session: one agent's MCP session and the upstream connections serving it.
//!
//! Owns: answering `initialize` as one server, routing each agent request to the right upstream
//! (tools and prompts by exposed name, resources by URI, completions by reference), merging
//! lists, id remapping for server→client requests, translating cancellations, choosing the
//! stream each upstream message goes to, restarting a dead upstream on next use with backoff.
//!
//! Must not: know the downstream transport. It receives parsed messages and writes serialised
//! ones to [`Sink`]s; the fronts (`crate::downstream`) own sockets and stdio.

pub mod catalog;
mod lists;
pub mod shared;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Config, Upstream as UpstreamConfig};
use crate::downstream::identity::Caller;
use crate::jsonrpc::{self, code, Edit, Kind, Message};
use crate::mcp;
use crate::policy;
use crate::upstream::{lock, Connection, Event, EventHandler, Handshake, Inbound, UpstreamError};
use catalog::{Fetched, ListKind};

/// Where messages for the agent go, one JSON-RPC message per item (kept parsed, so a front can
/// tell an answer from a notification without parsing again).
pub type Sink = mpsc::Sender<Message>;

/// How long an upstream that keeps failing is left alone before the next attempt, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Time allowed for an internal list request (`tools/list` pages) to one upstream.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

enum SlotState {
    Up {
        conn: Arc<Connection>,
        since: Instant,
    },
    Down {
        retry_at: Instant,
        reason: String,
    },
    Disabled,
}

/// One upstream as this session uses it. Identified by `id`, stable for the session's life
/// (config reloads add, replace and remove slots, never renumber them): ids are what in-flight
/// bookkeeping and list entries refer to.
struct Slot {
    id: usize,
    /// Swapped on reload when the running connection can keep serving (same transport).
    cfg: RwLock<Arc<UpstreamConfig>>,
    /// Enabled, and the session's agent may use it. An unusable upstream is never started for
    /// this session and nothing of it is reachable.
    usable: AtomicBool,
    /// Set for `shared = true` upstreams: the connection is the registry's, not the session's.
    shared: Option<Arc<shared::SharedUpstream>>,
    state: Mutex<SlotState>,
    /// Serialises (re)connection attempts.
    connecting: tokio::sync::Mutex<()>,
    failures: AtomicU64,
    /// A restart is scheduled for when the backoff ends (see [`Session::schedule_restart`]).
    restart_pending: AtomicBool,
}

impl Slot {
    fn new(
        id: usize,
        cfg: Arc<UpstreamConfig>,
        usable: bool,
        shared: Option<Arc<shared::SharedUpstream>>,
    ) -> Slot {
        Slot {
            id,
            cfg: RwLock::new(cfg),
            usable: AtomicBool::new(usable),
            shared: shared.filter(|_| usable),
            state: Mutex::new(if usable {
                SlotState::Down {
                    retry_at: Instant::now(),
                    reason: "not started".into(),
                }
            } else {
                SlotState::Disabled
            }),
            connecting: tokio::sync::Mutex::new(()),
            failures: AtomicU64::new(0),
            restart_pending: AtomicBool::new(false),
        }
    }

    fn cfg(&self) -> Arc<UpstreamConfig> {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn name(&self) -> String {
        self.cfg().name.clone()
    }

    fn usable(&self) -> bool {
        self.usable.load(Ordering::Relaxed)
    }
}

struct InFlight {
    seq: u64,
    /// Waiting for a human: not worth waiting for when the agent hangs up.
    held: bool,
    sink: Sink,
    /// The upstream and upstream-side id once forwarded.
    upstream: Option<(usize, u64)>,
    progress_token: Option<String>,
    abort: Option<tokio::task::AbortHandle>,
}

/// A server→client request forwarded to the agent under our own id.
struct ServerRequest {
    upstream: usize,
    upstream_id: String,
}

/// What the sessions of one proxy instance share: `shared = true` upstream connections and the
/// tool-definition pins.
pub struct Services {
    pub upstreams: shared::Registry,
    pub pins: Option<Arc<crate::pins::PinStore>>,
    /// Held calls and the humans who decide them; `None` (no state directory): every consent
    /// envelope is refused (fail closed).
    pub broker: Option<Arc<crate::approval::Broker>>,
    /// Remote operators' credentials (shared with the control endpoints; swapped on reload).
    pub operators: crate::approval::control::Operators,
    _control: Option<crate::task::Owned>,
}

impl Services {
    pub fn new(cfg: &Arc<Config>) -> Services {
        let dir = cfg.state_dir();
        let usable = match crate::state::ensure_dir(&dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "no usable state directory: tool definitions are not pinned and consent envelopes are refused");
                false
            }
        };
        let pins = usable.then(|| Arc::new(crate::pins::PinStore::open(dir.clone())));
        let broker = usable.then(|| Arc::new(crate::approval::Broker::open(dir.clone())));
        if let Some(b) = &broker {
            b.set_webhooks(cfg.approvals.webhooks.clone());
            b.set_grant_policy(cfg.approvals.grant_ttl, cfg.approvals.grant_per_arguments);
        }
        let operators: crate::approval::control::Operators =
            Arc::new(RwLock::new(crate::approval::control::operators_of(cfg)));
        // The control API needs a runtime (it is absent in unit tests building Services).
        let control = match (&broker, tokio::runtime::Handle::try_current()) {
            (Some(b), Ok(_)) => {
                match crate::approval::control::serve(&dir, b.clone(), operators.clone()) {
                    Ok(task) => Some(task),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serve the control API: approvals can only expire");
                        None
                    }
                }
            }
            _ => None,
        };
        Services {
            upstreams: shared::Registry::new(cfg),
            pins,
            broker,
            operators,
            _control: control,
        }
    }

    pub fn close(&self) {
        self.upstreams.close();
    }

    /// Waits (up to 5 s) until what was queued for the approval store is written: audit
    /// entries of the last calls must not be lost at shutdown.
    pub async fn flush(&self) {
        if let Some(b) = &self.broker {
            if tokio::time::timeout(Duration::from_secs(5), b.flush())
                .await
                .is_err()
            {
                tracing::error!("the approval store did not finish writing within 5 s of shutdown");
            }
        }
    }
}

pub struct Session {
    pub id: String,
    pins: Option<Arc<crate::pins::PinStore>>,
    broker: Option<Arc<crate::approval::Broker>>,
    /// Who this session serves; fixed for its lifetime.
    pub caller: Caller,
    cfg: RwLock<Arc<Config>>,
    agent: RwLock<Option<Arc<crate::config::Agent>>>,
    pub protocol_version: &'static str,
    handshake: Handshake,
    slots: RwLock<Vec<Arc<Slot>>>,
    next_slot: AtomicU64,
    lists: lists::Lists,
    inflight: Mutex<HashMap<String, InFlight>>,
    server_requests: Mutex<HashMap<u64, ServerRequest>>,
    /// Tasks this session created, under ids of ours.
    tasks: Mutex<tasks::Tasks>,
    seq: AtomicU64,
    /// Messages not tied to an agent request (list changes, server requests outside a call).
    general: Sink,
    last_active: Mutex<Instant>,
    /// Which list-changed notifications the agent was promised: tools, prompts, resources.
    announced: Mutex<[bool; 3]>,
    /// `initialize` has been answered: an upstream coming up now changes the agent's lists.
    answered: AtomicBool,
    closed: AtomicBool,
    this: Weak<Session>,
}

impl Session {
    /// Creates the session for an `initialize` request and connects every enabled upstream in
    /// parallel (each bounded by its startup timeout; one failing does not stop the others).
    /// Returns the session and the `initialize` response for the agent.
    pub async fn initialize(
        id: String,
        cfg: Arc<Config>,
        caller: Caller,
        shared: &Services,
        init: &Message,
        general: Sink,
    ) -> (Arc<Session>, Message) {
        let params: mcp::InitializeParams<'_> = init
            .params()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        let version = mcp::negotiate(params.protocol_version.as_deref());
        let raw = |v: Option<&RawValue>, fallback: &str| {
            v.map(|v| v.to_owned())
                .or_else(|| RawValue::from_string(fallback.to_string()).ok())
                .unwrap_or_else(|| RawValue::NULL.to_owned())
        };
        let handshake = Handshake {
            protocol_version: version.to_string(),
            capabilities: raw(params.capabilities, "{}"),
            client_info: raw(params.client_info, r#"{"name":"mcp-warden","version":"0"}"#),
        };
        let agent = match &caller {
            Caller::Agent(name) => cfg.agent(name).cloned(),
            Caller::User => None,
        };
        let slots: Vec<Arc<Slot>> = cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let usable = u.enabled && policy::agent::server_allowed(agent.as_deref(), &u.name);
                Arc::new(Slot::new(
                    i,
                    Arc::new(u.clone()),
                    usable,
                    shared.upstreams.get(&u.name),
                ))
            })
            .collect();
        let next_slot = AtomicU64::new(slots.len() as u64);
        let session = Arc::new_cyclic(|this| Session {
            id,
            caller,
            pins: shared.pins.clone(),
            broker: shared.broker.clone(),
            cfg: RwLock::new(cfg),
            agent: RwLock::new(agent),
            protocol_version: version,
            handshake,
            slots: RwLock::new(slots),
            next_slot,
            lists: lists::Lists::default(),
            inflight: Mutex::new(HashMap::new()),
            server_requests: Mutex::new(HashMap::new()),
            tasks: Mutex::new(tasks::Tasks::default()),
            seq: AtomicU64::new(1),
            general,
            last_active: Mutex::new(Instant::now()),
            announced: Mutex::new([true, false, false]),
            answered: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            this: this.clone(),
        });
        for slot in session.all_slots() {
            if let Some(sh) = &slot.shared {
                sh.attach(session.this.clone());
            }
        }
        // Start every upstream in parallel; answer once all are up or `initialize_wait` has
        // passed. A slower one (an `npx` download, say) joins later and the agent gets
        // `list_changed` then.
        let starts: Vec<_> = session
            .slot_ids()
            .into_iter()
            .map(|i| {
                let s = session.clone();
                tokio::spawn(async move {
                    let _ = s.connection(i).await;
                })
            })
            .collect();
        let wait = session.cfg().proxy.initialize_wait;
        if tokio::time::timeout(wait, futures_util::future::join_all(starts))
            .await
            .is_err()
        {
            tracing::warn!(session = %session.id, waited = ?wait, "answering initialize before every upstream is up; the others join later");
        }
        session.answered.store(true, Ordering::Relaxed);
        let reply = session.initialize_result(init.id_str().unwrap_or("null"));
        (session, reply)
    }

    fn initialize_result(&self, id: &str) -> Message {
        let mut caps = serde_json::Map::new();
        let mut instructions = vec![];
        for id in self.slot_ids() {
            let Some(conn) = self.live(id) else {
                continue;
            };
            for (k, v) in &conn.init.capabilities {
                merge_capability(caps.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
            if let Some(i) = &conn.init.instructions {
                instructions.push(i.clone());
            }
        }
        // mcp-warden itself announces list changes (an upstream coming or going changes them).
        let tools = caps.entry("tools").or_insert_with(|| serde_json::json!({}));
        if let Some(t) = tools.as_object_mut() {
            t.insert("listChanged".into(), serde_json::Value::Bool(true));
        }
        for (i, key) in [(1, "prompts"), (2, "resources")] {
            if let Some(obj) = caps.get_mut(key).and_then(|v| v.as_object_mut()) {
                obj.insert("listChanged".into(), serde_json::Value::Bool(true));
                lock(&self.announced)[i] = true;
            }
        }
        let mut result = serde_json::json!({
            "protocolVersion": self.protocol_version,
            "capabilities": caps,
            "serverInfo": {"name": self.cfg().proxy.server_name, "version": env!("CARGO_PKG_VERSION")},
        });
        if !instructions.is_empty() {
            result["instructions"] = serde_json::Value::String(instructions.join("\n\n"));
        }
        jsonrpc::response(id, result)
    }

    pub fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    /// Idle: no request in flight and no activity for `ttl`.
    pub fn idle_for(&self) -> Duration {
        if !lock(&self.inflight).is_empty() {
            return Duration::ZERO;
        }
        lock(&self.last_active).elapsed()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until no agent request is in flight: used when the agent hangs up, so
    /// that answers to what it already sent are still written.
    pub async fn drain(&self, within: Duration) {
        let end = Instant::now() + within;
        // Calls held for a human are not waited for: the agent that asked is gone, so closing
        // the session cancels their approvals.
        while lock(&self.inflight).values().any(|f| !f.held) && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends the session: in-flight calls are dropped, upstream connections closed (stdio
    /// children get the spec's shutdown sequence).
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let inflight: Vec<_> = lock(&self.inflight).drain().collect();
        for (_, f) in inflight {
            if let Some(a) = f.abort {
                a.abort();
            }
        }
        self.lists.close();
        for slot in self.all_slots() {
            *lock(&slot.state) = SlotState::Disabled;
        }
        tracing::info!(session = %self.id, "session closed");
    }

    // ---- upstream connections ----

    /// The live connection of upstream `idx`, (re)connecting if it is down and its backoff has
    /// passed.
    async fn connection(&self, idx: usize) -> Result<Arc<Connection>, UpstreamError> {
        if let Some(c) = self.live(idx) {
            return Ok(c);
        }
        // Starting an upstream is a large future; boxed, it does not weigh on every call's
        // task (see `start_request`).
        Box::pin(self.connect_slot(idx)).await
    }

    async fn connect_slot(&self, idx: usize) -> Result<Arc<Connection>, UpstreamError> {
        let Some(slot) = self.slot(idx) else {
            return Err(UpstreamError::Unavailable(format!("#{idx}")));
        };
        if let Some(c) = self.live(idx) {
            return Ok(c);
        }
        if !slot.usable() {
            return Err(UpstreamError::Unavailable(slot.name()));
        }
        if let Some(sh) = &slot.shared {
            if self.is_closed() {
                return Err(UpstreamError::Unavailable(slot.name()));
            }
            return sh.connection().await;
        }
        let _one = slot.connecting.lock().await;
        match &*lock(&slot.state) {
            SlotState::Up { conn, .. } if conn.is_alive() => return Ok(conn.clone()),
            SlotState::Disabled => return Err(UpstreamError::Unavailable(slot.name())),
            SlotState::Down { retry_at, reason } if *retry_at > Instant::now() => {
                tracing::debug!(upstream = %slot.name(), %reason, "upstream still in backoff");
                self.schedule_restart(idx, *retry_at);
                return Err(UpstreamError::Unavailable(slot.name()));
            }
            _ => {}
        }
        if self.is_closed() {
            return Err(UpstreamError::Unavailable(slot.name()));
        }
        let this = self.this.clone();
        let handler: EventHandler = Arc::new(move |ev| {
            if let Some(s) = this.upgrade() {
                s.on_upstream_event(idx, ev);
            }
        });
        match Connection::connect(
            &slot.cfg(),
            &self.handshake,
            self.cfg().proxy.max_line_bytes,
            handler,
        )
        .await
        {
            Ok(conn) => {
                let conn = Arc::new(conn);
                let was_down_after_start = slot.failures.load(Ordering::Relaxed) > 0
                    || self.answered.load(Ordering::Relaxed);
                {
                    let mut st = lock(&slot.state);
                    if matches!(*st, SlotState::Disabled) || self.is_closed() {
                        return Err(UpstreamError::Unavailable(slot.name()));
                    }
                    *st = SlotState::Up {
                        conn: conn.clone(),
                        since: Instant::now(),
                    };
                }
                // Lists built while it was down lack its items (even before `initialize` was
                // answered: an upstream's list_changed can trigger a build that early).
                self.invalidate(&ListKind::ALL);
                if was_down_after_start {
                    self.notify_changed(&ListKind::ALL);
                }
                Ok(conn)
            }
            Err(e) => {
                let n = slot.failures.fetch_add(1, Ordering::Relaxed);
                let backoff = backoff(n);
                tracing::warn!(upstream = %slot.name(), error = %e, retry_in = ?backoff, "upstream unavailable");
                let retry_at = Instant::now() + backoff;
                {
                    let mut st = lock(&slot.state);
                    if matches!(*st, SlotState::Disabled) {
                        return Err(e);
                    }
                    *st = SlotState::Down {
                        retry_at,
                        reason: e.to_string(),
                    };
                }
                self.schedule_restart(idx, retry_at);
                Err(e)
            }
        }
    }

    /// Restarts a down upstream when its backoff ends, whether or not the agent uses it
    /// meanwhile: its tools are withdrawn while it is down, so nothing else would ask for it.
    /// One timer per slot; a failed attempt schedules the next (with a longer backoff), for any
    /// number of crashes, until the session closes.
    fn schedule_restart(&self, idx: usize, at: Instant) {
        let Some(slot) = self.slot(idx) else { return };
        if slot.shared.is_some()
            || self.is_closed()
            || slot.restart_pending.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.this.clone();
        crate::task::detach(
            tracing::info_span!("restart", session = %self.id, upstream = %slot.name()),
            async move {
                tokio::time::sleep_until(at).await;
                let Some(s) = this.upgrade() else { return };
                if let Some(slot) = s.slot(idx) {
                    slot.restart_pending.store(false, Ordering::Release);
                }
                if !s.is_closed() {
                    let _ = s.connection(idx).await;
                }
            },
        );
    }

    /// Starts a (re)connection of a down upstream whose backoff has passed, without waiting.
    fn reconnect_in_background(&self, idx: usize) {
        let Some(slot) = self.slot(idx) else { return };
        if self.is_closed() || !slot.usable() {
            return;
        }
        let due = match &*lock(&slot.state) {
            SlotState::Down { retry_at, .. } => *retry_at <= Instant::now(),
            _ => slot.shared.is_some(),
        };
        let idle = slot.connecting.try_lock().is_ok();
        if !(due && idle) {
            return;
        }
        if let Some(this) = self.this.upgrade() {
            // Bounded by the upstream's startup timeout.
            let span = tracing::debug_span!("reconnect", session = %self.id, upstream = idx);
            crate::task::detach(span, async move {
                let _ = this.connection(idx).await;
            });
        }
    }

    fn live(&self, idx: usize) -> Option<Arc<Connection>> {
        let slot = self.slot(idx)?;
        if let Some(sh) = &slot.shared {
            return if self.is_closed() || !slot.usable() {
                None
            } else {
                sh.live()
            };
        }
        let st = lock(&slot.state);
        match &*st {
            SlotState::Up { conn, .. } if conn.is_alive() => Some(conn.clone()),
            _ => None,
        }
    }

    /// The slot with this id (`None`: removed by a reload).
    fn slot(&self, id: usize) -> Option<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn slot_ids(&self) -> Vec<usize> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.id)
            .collect()
    }

    pub fn cfg(&self) -> Arc<Config> {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn upstream_closed(&self, idx: usize, reason: String) {
        let Some(slot) = self.slot(idx) else { return };
        {
            let mut st = lock(&slot.state);
            let lived = match &*st {
                SlotState::Up { since, .. } => since.elapsed(),
                _ => return,
            };
            // A connection that stayed up a while resets the backoff; a crash loop grows it.
            let n = if lived > Duration::from_secs(30) {
                slot.failures.store(1, Ordering::Relaxed);
                0
            } else {
                slot.failures.fetch_add(1, Ordering::Relaxed)
            };
            let retry_at = Instant::now() + backoff(n);
            *st = SlotState::Down { retry_at, reason };
            drop(st);
            self.schedule_restart(idx, retry_at);
        }
        tracing::warn!(session = %self.id, upstream = %slot.name(), "upstream went down; its tools are withdrawn until it is back");
        self.lists_changed(&ListKind::ALL);
    }

    /// Applies a new, already validated config to this live session: the agent's policy is
    /// swapped; upstreams that were removed, became unusable or changed their connection are
    /// stopped; new ones start; the agent hears `list_changed` for each list whose view changed.
    /// Returns false (and closes the session) when its agent no longer exists.
    pub fn reconfigure(&self, cfg: Arc<Config>, services: &Services) -> bool {
        let agent = match &self.caller {
            Caller::Agent(name) => match cfg.agent(name) {
                Some(a) => Some(a.clone()),
                None => {
                    tracing::warn!(session = %self.id, agent = %name, "agent removed from the config; session closed");
                    self.close();
                    return false;
                }
            },
            Caller::User if !cfg.agents.is_empty() => {
                tracing::warn!(session = %self.id, "agents are now named: the single-user session is closed");
                self.close();
                return false;
            }
            Caller::User => None,
        };
        let old = self.all_slots();
        let mut kept: Vec<Arc<Slot>> = Vec::with_capacity(cfg.upstreams.len());
        let mut started = vec![];
        for u in &cfg.upstreams {
            let usable = u.enabled && policy::agent::server_allowed(agent.as_deref(), &u.name);
            let reuse = old
                .iter()
                .find(|s| s.name() == u.name && s.usable() == usable && s.cfg().same_connection(u));
            match reuse {
                Some(s) => {
                    *s.cfg.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(u.clone());
                    kept.push(s.clone());
                }
                None => {
                    let id = self.next_slot.fetch_add(1, Ordering::Relaxed) as usize;
                    let slot = Arc::new(Slot::new(
                        id,
                        Arc::new(u.clone()),
                        usable,
                        services.upstreams.get(&u.name),
                    ));
                    if let Some(sh) = &slot.shared {
                        sh.attach(self.this.clone());
                    }
                    if usable {
                        started.push(id);
                    }
                    kept.push(slot);
                }
            }
        }
        for s in &old {
            if !kept.iter().any(|k| Arc::ptr_eq(k, s)) {
                tracing::info!(session = %self.id, upstream = %s.name(), "upstream removed or changed by the new config; stopping it");
                *lock(&s.state) = SlotState::Disabled;
            }
        }
        *self.slots.write().unwrap_or_else(|p| p.into_inner()) = kept;
        *self.agent.write().unwrap_or_else(|p| p.into_inner()) = agent;
        *self.cfg.write().unwrap_or_else(|p| p.into_inner()) = cfg;
        for id in started {
            self.reconnect_in_background(id);
        }
        self.upstream_lists_changed(&ListKind::ALL);
        true
    }

    /// A message or event from the shared upstream `name`, for this session's slot using it.
    pub(crate) fn on_shared_event(&self, name: &str, ev: Event) {
        let slot = self
            .all_slots()
            .into_iter()
            .find(|s| s.shared.is_some() && s.name() == name);
        if let Some(slot) = slot {
            self.on_upstream_event(slot.id, ev);
        }
    }

    /// A shared upstream came up: sessions already answered see new tools.
    fn upstream_arrived(&self) {
        if self.answered.load(Ordering::Relaxed) && !self.is_closed() {
            self.lists_changed(&ListKind::ALL);
        }
    }

    /// A shared upstream's connection ended: its tools are gone for now.
    fn shared_upstream_closed(&self, name: &str) {
        tracing::warn!(session = %self.id, upstream = %name, "shared upstream went down");
        self.lists_changed(&ListKind::ALL);
    }

    /// An upstream says a list changed: re-fetch, and tell the agent only if *its* view changed
    /// (a change to something it cannot see is not its business, and costs it a prompt-cache
    /// miss for nothing).
    fn upstream_lists_changed(&self, kinds: &'static [ListKind]) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        // Bounded by the lists' timeouts.
        let span = tracing::debug_span!("lists changed", session = %self.id);
        crate::task::detach(span, async move {
            let mut changed = vec![];
            for &k in kinds {
                let old = this.lists.current(k);
                this.lists.invalidate(&[k]);
                let new = this.list(k).await;
                if !old.is_some_and(|o| o.same_view(&new)) {
                    changed.push(k);
                }
            }
            if changed.is_empty() {
                tracing::debug!(session = %this.id, "upstream list change invisible to this agent");
            } else {
                this.notify_changed(&changed);
            }
        });
    }

    /// Invalidates cached lists and tells the agent.
    fn lists_changed(&self, kinds: &[ListKind]) {
        self.invalidate(kinds);
        self.notify_changed(kinds);
    }

    /// Drops cached lists; the next request rebuilds them.
    fn invalidate(&self, kinds: &[ListKind]) {
        self.lists.invalidate(kinds);
    }

    fn notify_changed(&self, kinds: &[ListKind]) {
        let mut sent = [false; 3];
        for &k in kinds {
            let (i, method) = match k {
                ListKind::Tools => (0, "notifications/tools/list_changed"),
                ListKind::Prompts => (1, "notifications/prompts/list_changed"),
                ListKind::Resources | ListKind::Templates => {
                    (2, "notifications/resources/list_changed")
                }
            };
            if lock(&self.announced)[i] && !std::mem::replace(&mut sent[i], true) {
                self.send_general(jsonrpc::notification(method, None));
            }
        }
    }

    fn send_general(&self, msg: Message) {
        if self.general.try_send(msg).is_err() {
            tracing::debug!(session = %self.id, "agent's notification stream is full or closed; message dropped");
        }
    }

    // ---- lists ----

    async fn fetch_all(&self, idx: usize, kind: ListKind) -> Option<Fetched> {
        // Lists never wait for an upstream that is (re)starting: they show what is up now, and
        // the agent hears `list_changed` when the rest arrives.
        let Some(conn) = self.live(idx) else {
            tracing::debug!(upstream = %self.slot(idx).map(|s| s.name()).unwrap_or_default(), "not up: left out of the list for now");
            self.reconnect_in_background(idx);
            return None;
        };
        if !conn.has_capability(kind.capability()) {
            tracing::debug!(upstream = %conn.name(), capability = kind.capability(), "upstream lacks the capability");
            return None;
        }
        let mut items = vec![];
        let mut cursor: Option<String> = None;
        // Bounded: a misbehaving upstream could hand out cursors forever.
        for _ in 0..1000 {
            let params = match &cursor {
                Some(c) => serde_json::json!({"cursor": c}),
                None => serde_json::json!({}),
            };
            let page = match conn.call(kind.method(), params, LIST_TIMEOUT).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(upstream = %conn.name(), error = %e, "listing failed");
                    return None;
                }
            };
            match catalog::page_items(kind, &page, &mut items) {
                Ok(Some(next)) => cursor = Some(next),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(upstream = %conn.name(), method = kind.method(), "{e}");
                    break;
                }
            }
        }
        if kind == ListKind::Tools {
            crate::metrics::METRICS.tools_listed(conn.name(), items.len());
        }
        let cfg = self.slot(idx)?.cfg();
        Some(Fetched {
            upstream: idx,
            namespace: cfg.namespace.clone(),
            cfg,
            items,
        })
    }

    async fn answer_list(&self, msg: &Message, kind: ListKind) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let list = self.list(kind).await;
        #[derive(serde::Deserialize)]
        struct P {
            cursor: Option<String>,
        }
        let cursor = msg
            .params()
            .and_then(|p| serde_json::from_str::<P>(p).ok())
            .and_then(|p| p.cursor);
        let start = match cursor.as_deref() {
            None => 0,
            Some(c) => match c.strip_prefix("mw:").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n <= list.entries.len() => n,
                _ => {
                    return jsonrpc::error_response(
                        Some(id),
                        code::INVALID_PARAMS,
                        "Invalid cursor",
                    )
                }
            },
        };
        let page = self.cfg().proxy.page_size;
        let end = if page == 0 {
            list.entries.len()
        } else {
            (start + page).min(list.entries.len())
        };
        let mut body = Vec::with_capacity(
            64 + list.entries[start..end]
                .iter()
                .map(|e| e.size_hint() + 3)
                .sum::<usize>(),
        );
        body.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(b",\"result\":{\"");
        body.extend_from_slice(kind.field().as_bytes());
        body.extend_from_slice(b"\":[");
        for (i, e) in list.entries[start..end].iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            e.write_to(&mut body);
        }
        body.push(b']');
        if end < list.entries.len() {
            body.extend_from_slice(format!(",\"nextCursor\":\"mw:{end}\"").as_bytes());
        }
        body.extend_from_slice(b"}}");
        Message::parse(Bytes::from(body)).unwrap_or_else(|_| {
            jsonrpc::error_response(Some(id), code::INTERNAL_ERROR, "Internal error")
        })
    }

    // ---- agent → proxy ----

    /// Handles one message from the agent. Requests are served on their own task; their answer
    /// (and every message related to them) goes to `sink`.
    pub fn handle(&self, msg: Message, sink: Sink) {
        self.touch();
        match msg.kind() {
            Kind::Request => self.start_request(msg, sink),
            Kind::Notification => self.on_agent_notification(msg),
            Kind::Response => self.on_agent_response(msg),
        }
    }

    fn start_request(&self, msg: Message, sink: Sink) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let id = msg.id_str().unwrap_or("null").to_string();
        let progress_token = msg
            .params()
            .and_then(|p| serde_json::from_str::<mcp::MetaParams<'_>>(p).ok())
            .and_then(|p| p.meta)
            .and_then(|m| m.progress_token)
            .map(|t| t.get().to_string());
        {
            let mut inflight = lock(&self.inflight);
            let max = self.cfg().proxy.max_inflight_per_session;
            if inflight.len() >= max {
                drop(inflight);
                let err = crate::error::Failure::Busy { max }
                    .answer(Some(&id), &"the session's in-flight limit was reached");
                let _ = sink.try_send(err);
                return;
            }
            if inflight.contains_key(&id) {
                drop(inflight);
                let err = jsonrpc::error_response(
                    Some(&id),
                    code::INVALID_REQUEST,
                    "Duplicate request id: a request with this id is still in flight",
                );
                let _ = sink.try_send(err);
                return;
            }
            inflight.insert(
                id.clone(),
                InFlight {
                    seq: self.seq.fetch_add(1, Ordering::Relaxed),
                    held: false,
                    sink: sink.clone(),
                    upstream: None,
                    progress_token,
                    abort: None,
                },
            );
        }
        let key = id.clone();
        // Every log line of this request carries who asked what (the id is the agent's). A
        // debug span: at info level, creating it cost ~10-30 us of CPU per call over HTTP in the
        // benchmark; info lines on refusals name the agent themselves.
        let span = tracing::debug_span!(
            "request",
            session = %self.id,
            agent = %self.caller_name(),
            method = msg.method().unwrap_or_default(),
            id = %key,
            upstream = tracing::field::Empty,
        );
        // One task per request, so that it outlives an HTTP client that disconnects. Its
        // future is kept small (rare, large branches are boxed): it is allocated and moved
        // for every call.
        // One task per request, so that it outlives an HTTP client that disconnects. Its
        // future is kept small (rare, large branches are boxed): it is allocated and moved
        // for every call.
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let reply = this.serve(msg, &key).await;
                let still_ours = lock(&this.inflight).remove(&key).is_some();
                if let (true, Some(reply)) = (still_ours, reply) {
                    if let Err(mpsc::error::TrySendError::Full(reply)) = sink.try_send(reply) {
                        let _ = Box::pin(sink.send(reply)).await;
                    }
                }
            },
            span,
        ));
        if let Some(f) = lock(&self.inflight).get_mut(&id) {
            f.abort = Some(task.abort_handle());
        }
    }

    async fn serve(&self, msg: Message, key: &str) -> Option<Message> {
        let id = msg.id_str().unwrap_or("null");
        let method = msg.method().unwrap_or_default();
        let reply = match method {
            "ping" => jsonrpc::response(id, serde_json::json!({})),
            "initialize" => jsonrpc::error_response(
                Some(id),
                code::INVALID_REQUEST,
                "Session already initialized",
            ),
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                let kind = ListKind::from_method(method)?;
                Box::pin(self.answer_list(&msg, kind)).await
            }
            "tools/call" => self.route_named(&msg, ListKind::Tools, key).await,
            "prompts/get" => Box::pin(self.route_named(&msg, ListKind::Prompts, key)).await,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Box::pin(self.route_uri(&msg, key)).await
            }
            "completion/complete" => Box::pin(self.route_completion(&msg, key)).await,
            "logging/setLevel" => Box::pin(self.broadcast_request(&msg, "logging")).await,
            "tasks/get" | "tasks/result" | "tasks/cancel" => {
                Box::pin(self.route_task(&msg, key)).await
            }
            "tasks/list" => Box::pin(self.list_tasks(&msg)).await,
            _ => match self.single_upstream() {
                Some(idx) => self.forward(idx, msg.clone(), key).await,
                None => {
                    jsonrpc::error_response(Some(id), code::METHOD_NOT_FOUND, "Method not found")
                }
            },
        };
        Some(reply)
    }

    /// What this session's agent sees of `kind`: (exposed name, upstream name, original name,
    /// the item as shown). For `mcp-warden tools` and other operator views.
    pub async fn view(&self, kind: ListKind) -> Vec<(String, String, String, Bytes)> {
        self.list(kind)
            .await
            .entries
            .iter()
            .map(|e| {
                (
                    e.exposed.clone(),
                    self.slot(e.upstream).map(|s| s.name()).unwrap_or_default(),
                    e.original.clone(),
                    e.item(),
                )
            })
            .collect()
    }

    /// The upstream's own current definition of `tool`, straight from its `tools/list` (no
    /// policy, no pins): for `mcp-warden tools accept`.
    pub async fn upstream_definition(
        &self,
        upstream: &str,
        tool: &str,
    ) -> Option<serde_json::Value> {
        let idx = self.all_slots().iter().find(|s| s.name() == upstream)?.id;
        let fetched = self.fetch_all(idx, ListKind::Tools).await?;
        fetched.items.iter().find_map(|raw| {
            let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
            (v.get("name")?.as_str()? == tool).then_some(v)
        })
    }

    /// The upstreams that failed to come up for this session, with the reason.
    pub fn unavailable(&self) -> Vec<(String, String)> {
        self.all_slots()
            .iter()
            .filter(|s| s.usable())
            .filter_map(|s| match &*lock(&s.state) {
                SlotState::Down { reason, .. } if s.shared.is_none() => {
                    Some((s.name(), reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The agent this session serves (`None`: the single-user case, which sees everything).
    pub fn agent(&self) -> Option<Arc<crate::config::Agent>> {
        self.agent.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The only usable upstream, if there is exactly one (then unknown methods go to it).
    fn single_upstream(&self) -> Option<usize> {
        let enabled: Vec<usize> = self
            .all_slots()
            .iter()
            .filter(|s| s.usable())
            .map(|s| s.id)
            .collect();
        (enabled.len() == 1).then(|| enabled[0])
    }

    async fn route_named(&self, msg: &Message, kind: ListKind, key: &str) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let Some(params) = msg
            .params()
            .and_then(|p| serde_json::from_str::<mcp::NamedParams<'_>>(p).ok())
        else {
            return jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: `name` is required",
            );
        };
        let Some(name) = mcp::raw_str(params.name) else {
            return jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: `name` must be a string",
            );
        };
        let list = self.list_for(kind, &name).await;
        let entry = list.get(&name).or_else(|| {
            (kind == ListKind::Tools)
                .then(|| list.by_upstream_name(&name))
                .flatten()
        });
        let Some(entry) = entry else {
            let what = if kind == ListKind::Tools {
                "tool"
            } else {
                "prompt"
            };
            tracing::info!(session = %self.id, agent = %self.caller_name(), tool = %name, "call refused: unknown or hidden {what}");
            self.audit_refusal(&name, "hidden", &format!("unknown or hidden {what}"));
            return jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                &format!("Unknown {what}: {name}"),
            );
        };
        // From here on the call is known by its exposed name (rules and logs use it).
        let name = entry.exposed.clone();
        let mut edits = vec![];
        if entry.original != name {
            let quoted = serde_json::Value::String(entry.original.clone()).to_string();
            edits.push(Edit::new(msg.span_of(params.name.get()), quoted));
        }
        // Consent-enabled upstreams never get a `confirmation_token` from the agent: only
        // mcp-warden supplies one, after a human approved.
        let consent =
            kind == ListKind::Tools && self.slot(entry.upstream).is_some_and(|s| s.cfg().consent);
        let rewrite = match &entry.rewrite {
            Some(rw) => Some(rw.clone()),
            None if consent => Some(Arc::new(crate::config::ToolRewrite::default())),
            None => None,
        };
        if let (ListKind::Tools, Some(rw)) = (kind, &rewrite) {
            match arguments_edit(msg, rw) {
                Ok(Some(e)) => edits.push(e),
                Ok(None) => {}
                Err(refusal) => {
                    tracing::info!(session = %self.id, tool = %name, "call refused: {refusal}");
                    self.audit_refusal(&name, "arguments", &refusal);
                    return jsonrpc::response(
                        id,
                        serde_json::json!({
                            "content": [{"type": "text", "text": refusal}],
                            "isError": true,
                        }),
                    );
                }
            }
        }
        let out = match msg.edited(edits) {
            Ok(m) => m,
            Err(_) => {
                return jsonrpc::error_response(Some(id), code::INTERNAL_ERROR, "Internal error")
            }
        };
        // Operator rules may hold the call before it is forwarded at all; what is forwarded
        // after approval is exactly `out`, the bytes the approval was bound to.
        let mut approved = false;
        if kind == ListKind::Tools && self.policy_requires_approval(entry, &name) {
            let cfg = self.cfg();
            let summary = format!("{} wants to call {}", self.agent_name(), name);
            // Held calls are rare and their futures large: boxed (see `start_request`).
            if let Err(refusal) = Box::pin(self.await_approval(
                entry,
                &out,
                "policy",
                summary,
                cfg.approvals.default_expiry,
                key,
            ))
            .await
            {
                return refusal;
            }
            approved = true;
        }
        let reply = self.forward(entry.upstream, out.clone(), key).await;
        if kind == ListKind::Tools && tasks::is_task_augmented(&out) {
            // The result comes later, through `tasks/result`: the consent gate waits there.
            let later = consent
                .then(|| tasks::without_task(&out))
                .flatten()
                .map(|call| tasks::ConsentCall {
                    exposed: name.clone(),
                    call,
                    approved,
                });
            if consent && later.is_none() {
                return Self::refusal(id, "internal error");
            }
            if let Some(created) = self.task_created(entry.upstream, &reply, later) {
                return created;
            }
        }
        if !consent {
            return reply;
        }
        match reply.result().and_then(crate::approval::envelope::detect) {
            Some(envelope) => Box::pin(self.hold(entry, &name, out, envelope, key, approved)).await,
            None => reply,
        }
    }

    /// Every refused call goes into the audit log (who, what, why).
    fn audit_refusal(&self, name: &str, label: &'static str, reason: &str) {
        crate::metrics::METRICS.refused(self.caller_name(), label);
        if let Some(b) = &self.broker {
            b.audit(serde_json::json!({"kind": "call.refused", "agent": self.agent_name(), "name": name, "reason": reason}));
        }
    }

    fn agent_name(&self) -> String {
        self.caller_name().to_string()
    }

    /// The caller's name as policy, audit and metrics know it (`user` in single-user mode).
    fn caller_name(&self) -> &str {
        match &self.caller {
            Caller::Agent(n) => n,
            Caller::User => "user",
        }
    }

    /// Whether an operator rule (`[[approvals.require]]`) holds this call before forwarding.
    fn policy_requires_approval(&self, entry: &catalog::Entry, exposed: &str) -> bool {
        let cfg = self.cfg();
        if cfg.approvals.require.is_empty() {
            return false;
        }
        let agent = self.agent_name();
        let upstream = self
            .slot(entry.upstream)
            .map(|s| s.name())
            .unwrap_or_default();
        let call = policy::approval::Call {
            agent: &agent,
            upstream: &upstream,
            exposed,
            original: &entry.original,
        };
        // The tool's annotations are decoded only if a rule gets as far as asking, once.
        let mut annotations: Option<serde_json::Value> = None;
        policy::approval::requires_approval(&cfg.approvals.require, &call, |name| {
            let a = annotations.get_or_insert_with(|| {
                serde_json::from_slice::<serde_json::Value>(&entry.item())
                    .ok()
                    .map(|t| t["annotations"].clone())
                    .unwrap_or_default()
            });
            a[name] == serde_json::Value::Bool(true)
        })
    }

    /// A synthetic refusal: `isError` with `{"ok": false, "approved": false, "reason": …}`.
    fn refusal(id: &str, reason: &str) -> Message {
        let body = serde_json::json!({"ok": false, "approved": false, "reason": reason});
        jsonrpc::response(
            id,
            serde_json::json!({
                "content": [{"type": "text", "text": body.to_string()}],
                "structuredContent": body,
                "isError": true,
            }),
        )
    }

    /// Waits for a human (or a standing grant) to allow `call`. `Err` is the refusal to send.
    async fn await_approval(
        &self,
        entry: &catalog::Entry,
        call: &Message,
        kind: &str,
        summary: String,
        expiry: Duration,
        key: &str,
    ) -> Result<(), Message> {
        let id = call.id_str().unwrap_or("null").to_string();
        let cfg = self.cfg();
        let upstream = self
            .slot(entry.upstream)
            .map(|s| s.name())
            .unwrap_or_default();
        let agent = self.agent_name();
        let Some(broker) = self.broker.clone() else {
            return Err(Self::refusal(&id, "approval system unavailable"));
        };
        #[derive(serde::Deserialize)]
        struct Args {
            #[serde(default)]
            arguments: Option<serde_json::Value>,
        }
        let args = call
            .params()
            .and_then(|p| serde_json::from_str::<Args>(p).ok())
            .and_then(|a| a.arguments)
            .unwrap_or(serde_json::json!({}));
        let canonical = crate::approval::canonical(&args);
        let digest: String = {
            use sha2::Digest;
            sha2::Sha256::digest(canonical.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        if let Some(g) = broker
            .grant_for(&agent, &upstream, &entry.original, &digest)
            .await
        {
            broker.audit(serde_json::json!({"kind": "grant.used", "grant": g.id, "agent": agent, "upstream": upstream, "tool": entry.original}));
            crate::metrics::METRICS.approval("grant");
            return Ok(());
        }
        let info = crate::approval::ApprovalInfo {
            id: String::new(),
            agent,
            upstream,
            tool: entry.original.clone(),
            summary: summary.clone(),
            arguments: crate::approval::display_arguments(&canonical),
            arguments_sha256: digest,
            kind: kind.into(),
            created_at: 0,
            expires_at: 0,
            instance: None,
        };
        // While waiting, keep clients that reset their timeout on progress waiting.
        let progress = self.progress_ticker(key, summary, cfg.approvals.progress_interval);
        if let Some(f) = lock(&self.inflight).get_mut(key) {
            f.held = true;
        }
        let outcome = broker
            .request(info, expiry.min(cfg.approvals.max_expiry))
            .await;
        if let Some(f) = lock(&self.inflight).get_mut(key) {
            f.held = false;
        }
        drop(progress);
        let m = &crate::metrics::METRICS;
        let label = match &outcome {
            crate::approval::Outcome::Allowed { .. } => "allowed",
            crate::approval::Outcome::Denied => "denied",
            crate::approval::Outcome::Expired => "expired",
            crate::approval::Outcome::Failed(_) => "failed",
        };
        m.approval(label);
        if label != "allowed" {
            m.refused(self.caller_name(), label);
        }
        match outcome {
            crate::approval::Outcome::Allowed { .. } => Ok(()),
            crate::approval::Outcome::Denied => Err(Self::refusal(&id, "denied by a human")),
            crate::approval::Outcome::Expired => Err(Self::refusal(&id, "the approval expired")),
            crate::approval::Outcome::Failed(e) => {
                tracing::warn!(session = %self.id, "approval failed: {e}");
                Err(Self::refusal(&id, "the approval system failed"))
            }
        }
    }

    /// The consent flow (PRODUCT.md, "The consent envelope"): the upstream answered with an
    /// envelope, whose result is suppressed; a human decides (or a grant applies, or an
    /// operator-rule approval of this very call already covers it); on allow the same call is
    /// made again with `confirmation_token = action_id` and *that* result goes to the agent;
    /// anything else is a synthetic refusal. The `action_id` never leaves here.
    async fn hold(
        &self,
        entry: &catalog::Entry,
        exposed: &str,
        call: Message,
        envelope: crate::approval::envelope::Envelope,
        key: &str,
        approved: bool,
    ) -> Message {
        let id = call.id_str().unwrap_or("null").to_string();
        if !approved {
            let cfg = self.cfg();
            let expiry = envelope
                .expires_in_seconds
                .map(Duration::from_secs)
                .unwrap_or(cfg.approvals.default_expiry);
            let summary = envelope
                .summary
                .clone()
                .unwrap_or_else(|| format!("{} wants to call {}", self.agent_name(), exposed));
            if let Err(refusal) = self
                .await_approval(entry, &call, "envelope", summary, expiry, key)
                .await
            {
                return refusal;
            }
        }
        // Approved: the same call again, with the server's token.
        let Ok(second) = with_confirmation_token(&call, &envelope.action_id) else {
            return Self::refusal(&id, "internal error");
        };
        let reply = self.forward(entry.upstream, second, key).await;
        if reply
            .result()
            .and_then(crate::approval::envelope::detect)
            .is_some()
        {
            tracing::warn!(session = %self.id, tool = %exposed, "the server asked for confirmation again after approval; refusing rather than looping");
            return Self::refusal(&id, "the server asked for confirmation again");
        }
        reply
    }

    /// Sends `notifications/progress` to the held request's stream every `every` while the
    /// returned task lives, if the agent asked for progress.
    fn progress_ticker(
        &self,
        key: &str,
        summary: String,
        every: Duration,
    ) -> Option<crate::task::Owned> {
        let (sink, token) = {
            let inflight = lock(&self.inflight);
            let f = inflight.get(key)?;
            (f.sink.clone(), f.progress_token.clone()?)
        };
        Some(crate::task::spawn(tracing::Span::current(), async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(every).await;
                n += 1;
                let raw = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{token},"progress":{n},"message":{}}}}}"#,
                    serde_json::Value::String(format!("waiting for approval: {summary}"))
                );
                match Message::parse(Bytes::from(raw)) {
                    Ok(m) => {
                        if sink.send(m).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }))
    }

    async fn route_uri(&self, msg: &Message, key: &str) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let Some(uri) = msg
            .params()
            .and_then(|p| serde_json::from_str::<mcp::UriParams<'_>>(p).ok())
            .and_then(|p| mcp::raw_str(p.uri))
        else {
            return jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: `uri` is required",
            );
        };
        match self.upstream_for_uri(&uri).await {
            Some(idx) => self.forward(idx, msg.clone(), key).await,
            None => jsonrpc::error_response(
                Some(id),
                code::RESOURCE_NOT_FOUND,
                &format!("Resource not found: {uri}"),
            ),
        }
    }

    async fn upstream_for_uri(&self, uri: &str) -> Option<usize> {
        if let Some(idx) = self.single_upstream() {
            // Unlisted (dynamic) URIs go to the only upstream, within the agent's rules.
            let agent = self.agent();
            let rules = agent.as_ref().and_then(|a| a.resources.as_ref());
            let name = self.slot(idx)?.name();
            return policy::agent::item_visible(agent.as_deref(), &name, rules, &[uri])
                .then_some(idx);
        }
        if let Some(e) = self.list(ListKind::Resources).await.get(uri) {
            return Some(e.upstream);
        }
        let templates = self.list(ListKind::Templates).await;
        templates
            .entries
            .iter()
            .find(|t| catalog::template_matches(&t.original, uri))
            .map(|t| t.upstream)
    }

    async fn route_completion(&self, msg: &Message, key: &str) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let Some(params) = msg
            .params()
            .and_then(|p| serde_json::from_str::<mcp::CompleteParams<'_>>(p).ok())
        else {
            return jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: `ref` is required",
            );
        };
        match (
            params.reference.kind.as_str(),
            params.reference.name,
            params.reference.uri,
        ) {
            ("ref/prompt", Some(name_raw), _) => {
                let Some(name) = mcp::raw_str(name_raw) else {
                    return jsonrpc::error_response(
                        Some(id),
                        code::INVALID_PARAMS,
                        "Invalid params",
                    );
                };
                let list = self.list(ListKind::Prompts).await;
                let Some(entry) = list.get(&name) else {
                    return jsonrpc::error_response(
                        Some(id),
                        code::INVALID_PARAMS,
                        &format!("Unknown prompt: {name}"),
                    );
                };
                let out = if entry.original == name {
                    msg.clone()
                } else {
                    let quoted = serde_json::Value::String(entry.original.clone()).to_string();
                    match msg.edited(vec![Edit::new(msg.span_of(name_raw.get()), quoted)]) {
                        Ok(m) => m,
                        Err(_) => {
                            return jsonrpc::error_response(
                                Some(id),
                                code::INTERNAL_ERROR,
                                "Internal error",
                            )
                        }
                    }
                };
                self.forward(entry.upstream, out, key).await
            }
            ("ref/resource", _, Some(uri_raw)) => {
                let uri = mcp::raw_str(uri_raw).unwrap_or_default();
                let idx = match self.single_upstream() {
                    Some(i) => Some(i),
                    None => {
                        let t = self.list(ListKind::Templates).await;
                        match t.get(&uri) {
                            Some(e) => Some(e.upstream),
                            None => self.upstream_for_uri(&uri).await,
                        }
                    }
                };
                match idx {
                    Some(i) => self.forward(i, msg.clone(), key).await,
                    None => jsonrpc::error_response(
                        Some(id),
                        code::INVALID_PARAMS,
                        "Unknown resource reference",
                    ),
                }
            }
            _ => jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: unknown `ref` type",
            ),
        }
    }

    /// Sends the request to every live upstream declaring `capability`; answers `{}` if all
    /// that were asked succeeded, else the first error.
    async fn broadcast_request(&self, msg: &Message, capability: &str) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let mut conns = vec![];
        for i in self.slot_ids() {
            if let Ok(c) = self.connection(i).await {
                if c.has_capability(capability) {
                    conns.push(c);
                }
            }
        }
        let calls = conns.iter().map(|c| {
            let timeout = self.cfg().proxy.request_timeout;
            async move {
                let (_, fut) = c.start_request(msg);
                tokio::time::timeout(timeout, fut).await
            }
        });
        for r in futures_util::future::join_all(calls).await {
            if let Ok(Ok(m)) = r {
                if m.error().is_some() {
                    return m.with_id(id);
                }
            }
        }
        jsonrpc::response(id, serde_json::json!({}))
    }

    /// Forwards an agent request to upstream `idx` and returns the answer under the agent's id.
    async fn forward(&self, idx: usize, msg: Message, key: &str) -> Message {
        let id = msg.id_str().unwrap_or("null").to_string();
        let conn = match self.connection(idx).await {
            Ok(c) => c,
            Err(e) => return crate::error::Failure::from(&e).answer(Some(&id), &e),
        };
        let shared = self.slot(idx).and_then(|s| s.shared.clone());
        let (msg, our_token) = match &shared {
            Some(sh) => sh.rewrite_progress_token(&self.this, &msg),
            None => (msg, None),
        };
        tracing::Span::current().record("upstream", conn.name());
        let (up_id, out) = conn.prepare(&msg);
        if let Some(f) = lock(&self.inflight).get_mut(key) {
            f.upstream = Some((idx, up_id));
        }
        // Forgets the shared upstream's bookkeeping for this call however it ends.
        struct SharedCall(Option<Arc<shared::SharedUpstream>>, u64, Option<String>);
        impl Drop for SharedCall {
            fn drop(&mut self) {
                if let Some(sh) = &self.0 {
                    sh.call_ended(self.1, self.2.as_deref());
                }
            }
        }
        if let Some(sh) = &shared {
            sh.call_started(up_id, &self.this);
        }
        let _shared_call = SharedCall(shared, up_id, our_token);
        let timeout = self.cfg().proxy.request_timeout;
        let started = std::time::Instant::now();
        let method = msg.method().unwrap_or_default();
        let record = |outcome| {
            crate::metrics::METRICS.request(
                self.caller_name(),
                conn.name(),
                method,
                outcome,
                started.elapsed(),
            )
        };
        // The request future is built inside the timeout, not before it: a future held in a
        // local and then moved would take its space twice in this task.
        match tokio::time::timeout(timeout, conn.request(up_id, out)).await {
            Ok(Ok(reply)) => {
                record(crate::metrics::outcome(&reply));
                reply.with_id(&id)
            }
            Ok(Err(e)) => {
                record("unavailable");
                crate::error::Failure::from(&e).answer(Some(&id), &e)
            }
            Err(_) => {
                record("timeout");
                Box::pin(conn.cancel(up_id, "mcp-warden: request timed out")).await;
                crate::error::Failure::Timeout {
                    upstream: conn.name().to_string(),
                    after: Some(timeout),
                }
                .answer(
                    Some(&id),
                    &"the request timeout ran out; the upstream was told to cancel",
                )
            }
        }
    }

    fn on_agent_notification(&self, msg: Message) {
        match msg.method().unwrap_or_default() {
            "notifications/initialized" => {}
            "notifications/cancelled" => self.agent_cancelled(&msg),
            _ => {
                // roots/list_changed and anything unknown: every upstream may care.
                for i in self.slot_ids() {
                    if let Some(c) = self.live(i) {
                        c.send_later(msg.clone());
                    }
                }
            }
        }
    }

    fn agent_cancelled(&self, msg: &Message) {
        let Some(req) = msg
            .params()
            .and_then(|p| serde_json::from_str::<mcp::CancelledParams<'_>>(p).ok())
        else {
            return;
        };
        let key = req.request_id.get().to_string();
        let Some(f) = lock(&self.inflight).remove(&key) else {
            return;
        };
        if let Some(a) = f.abort {
            a.abort();
        }
        if let Some((idx, up_id)) = f.upstream {
            if let Some(conn) = self.live(idx) {
                // Same notification, with the upstream's id for the request.
                let edited = msg.edited(vec![Edit::new(
                    msg.span_of(req.request_id.get()),
                    up_id.to_string(),
                )]);
                if let Ok(m) = edited {
                    conn.send_later(m);
                }
            }
        }
    }

    fn on_agent_response(&self, msg: Message) {
        let Some(our_id) = msg.id_str().and_then(|s| s.parse::<u64>().ok()) else {
            tracing::debug!("agent answered an unknown request id");
            return;
        };
        let Some(req) = lock(&self.server_requests).remove(&our_id) else {
            tracing::debug!(id = our_id, "agent answered an unknown or finished request");
            return;
        };
        if let Some(conn) = self.live(req.upstream) {
            conn.send_later(msg.with_id(&req.upstream_id));
        }
    }

    // ---- upstream → agent ----

    pub(crate) fn on_upstream_event(&self, idx: usize, ev: Event) {
        match ev {
            Event::Closed { reason } => self.upstream_closed(idx, reason),
            Event::Message(inbound) => match inbound.msg.kind() {
                Kind::Request => self.upstream_request(idx, inbound),
                Kind::Notification => self.upstream_notification(idx, inbound),
                Kind::Response => {}
            },
        }
    }

    /// The sink for a message from upstream `idx`: the agent request it relates to (explicitly
    /// for HTTP upstreams, else the most recent call in flight to that upstream), else the
    /// general stream.
    fn sink_for(&self, idx: usize, related: Option<u64>) -> Sink {
        let inflight = lock(&self.inflight);
        let by_related =
            related.and_then(|r| inflight.values().find(|f| f.upstream == Some((idx, r))));
        let chosen = by_related.or_else(|| {
            inflight
                .values()
                .filter(|f| f.upstream.map(|(i, _)| i) == Some(idx))
                .max_by_key(|f| f.seq)
        });
        chosen
            .map(|f| f.sink.clone())
            .unwrap_or_else(|| self.general.clone())
    }

    fn upstream_request(&self, idx: usize, inbound: Inbound) {
        let our_id = self.seq.fetch_add(1, Ordering::Relaxed);
        let upstream_id = inbound.msg.id_str().unwrap_or("null").to_string();
        lock(&self.server_requests).insert(
            our_id,
            ServerRequest {
                upstream: idx,
                upstream_id,
            },
        );
        let out = inbound.msg.with_id(&our_id.to_string());
        let sink = self.sink_for(idx, inbound.related);
        if sink.try_send(out).is_err() {
            tracing::warn!(session = %self.id, "cannot deliver a server request to the agent; answering with an error");
            if let Some(req) = lock(&self.server_requests).remove(&our_id) {
                if let Some(conn) = self.live(idx) {
                    conn.send_later(jsonrpc::error_response(
                        Some(&req.upstream_id),
                        code::INTERNAL_ERROR,
                        "client unreachable",
                    ));
                }
            }
        }
    }

    fn upstream_notification(&self, idx: usize, inbound: Inbound) {
        let msg = inbound.msg;
        let method = msg.method().unwrap_or_default();
        if let Some(kinds) = ListKind::from_list_changed(method) {
            self.upstream_lists_changed(kinds);
            return;
        }
        let (sink, out) = match method {
            "notifications/progress" => {
                let token = msg
                    .params()
                    .and_then(|p| serde_json::from_str::<mcp::ProgressParams<'_>>(p).ok())
                    .map(|p| p.progress_token.get().to_string());
                let inflight = lock(&self.inflight);
                let owner = token.and_then(|t| {
                    inflight.values().find(|f| {
                        f.progress_token.as_deref() == Some(t.as_str())
                            && f.upstream.map(|u| u.0) == Some(idx)
                    })
                });
                match owner {
                    Some(f) => (f.sink.clone(), msg),
                    None => {
                        tracing::debug!("progress for no request in flight; dropped");
                        return;
                    }
                }
            }
            "notifications/cancelled" => {
                // The upstream withdrew one of its requests to the agent: use our id for it.
                let Some(p) = msg
                    .params()
                    .and_then(|p| serde_json::from_str::<mcp::CancelledParams<'_>>(p).ok())
                else {
                    return;
                };
                let up_id = p.request_id.get().to_string();
                let ours = {
                    let mut reqs = lock(&self.server_requests);
                    let found = reqs
                        .iter()
                        .find(|(_, r)| r.upstream == idx && r.upstream_id == up_id)
                        .map(|(k, _)| *k);
                    if let Some(k) = found {
                        reqs.remove(&k);
                    }
                    found
                };
                let Some(ours) = ours else { return };
                let Ok(m) = msg.edited(vec![Edit::new(
                    msg.span_of(p.request_id.get()),
                    ours.to_string(),
                )]) else {
                    return;
                };
                (self.sink_for(idx, inbound.related), m)
            }
            "notifications/resources/updated" => (self.general.clone(), msg),
            "notifications/tasks/status" => match self.task_status(idx, &msg) {
                Some(m) => (self.general.clone(), m),
                None => return,
            },
            _ => (self.sink_for(idx, inbound.related), msg),
        };
        if sink.try_send(out).is_err() {
            tracing::debug!(session = %self.id, "agent stream full or closed; notification dropped");
        }
    }
}

/// `params.arguments` of a call: the raw member if present.
#[derive(serde::Deserialize)]
struct ArgsView<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// The edit that makes `params.arguments` of `msg` be `text`: replacing the present member, or
/// inserting one as the first member of `params`.
fn set_arguments(msg: &Message, params: &str, present: Option<&RawValue>, text: String) -> Edit {
    match present {
        Some(raw) => Edit::new(msg.span_of(raw.get()), text),
        None => {
            let p = msg.span_of(params);
            let open = params.find('{').map(|i| p.start + i).unwrap_or(p.start);
            let empty = params
                .chars()
                .filter(|c| !c.is_whitespace())
                .eq("{}".chars());
            let member = format!("\"arguments\":{text}{}", if empty { "" } else { "," });
            Edit::new(open + 1..open + 1, member)
        }
    }
}

/// The call with `confirmation_token` set in its arguments (the only place mcp-warden writes an
/// `action_id`: towards the upstream that issued it).
fn with_confirmation_token(call: &Message, action_id: &str) -> Result<Message, ()> {
    let params = call.params().ok_or(())?;
    let parsed: ArgsView<'_> = serde_json::from_str(params).map_err(|_| ())?;
    let mut args: serde_json::Map<String, serde_json::Value> = match parsed.arguments {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|_| ())?,
        None => serde_json::Map::new(),
    };
    args.insert(
        "confirmation_token".into(),
        serde_json::Value::String(action_id.to_string()),
    );
    let text = serde_json::Value::Object(args).to_string();
    call.edited(vec![set_arguments(call, params, parsed.arguments, text)])
        .map_err(|_| ())
}

/// The edit that makes a call's `arguments` what the rewrite says (pinned values set, hidden
/// and never-advertised parameters refused or dropped), or the refusal text for the agent.
/// Only tools with a rewrite pay for this (their arguments are re-serialised).
fn arguments_edit(msg: &Message, rw: &crate::config::ToolRewrite) -> Result<Option<Edit>, String> {
    let Some(params) = msg.params() else {
        return Ok(None);
    };
    let parsed: ArgsView<'_> =
        serde_json::from_str(params).map_err(|_| "invalid params".to_string())?;
    // The common case — no pins, no hidden parameters (the consent-only rewrite every consent
    // upstream gets), an object without a never-advertised key — changes nothing: skip the
    // parse. Any backslash takes the full path, since an escaped key is still that key.
    if rw.pin.is_empty() && rw.hide.is_empty() {
        if let Some(raw) = parsed.arguments {
            let text = raw.get();
            if text.starts_with('{')
                && !text.contains('\\')
                && !policy::rewrite::NEVER_ADVERTISED
                    .iter()
                    .any(|k| text.contains(k))
            {
                return Ok(None);
            }
        }
    }
    let given: Option<serde_json::Value> = match parsed.arguments {
        Some(raw) => {
            Some(serde_json::from_str(raw.get()).map_err(|_| "invalid arguments".to_string())?)
        }
        None => None,
    };
    let out = policy::rewrite::apply_arguments(given.as_ref(), rw).map_err(|e| e.to_string())?;
    if given.as_ref() == Some(&out) {
        return Ok(None);
    }
    Ok(Some(set_arguments(
        msg,
        params,
        parsed.arguments,
        out.to_string(),
    )))
}

pub(crate) fn backoff(failures: u64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let ms = 250u64.saturating_mul(1 << failures.min(8));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// Merges one capability value into the accumulated one: objects are unioned key by key,
/// booleans ORed (e.g. `listChanged`, `subscribe`).
fn merge_capability(acc: &mut serde_json::Value, v: &serde_json::Value) {
    use serde_json::Value;
    match (acc, v) {
        (acc @ Value::Null, v) => *acc = v.clone(),
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                merge_capability(a.entry(k.clone()).or_insert(Value::Null), bv);
            }
        }
        (Value::Bool(a), Value::Bool(b)) => *a = *a || *b,
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_merge() {
        let mut acc = serde_json::Value::Null;
        merge_capability(&mut acc, &serde_json::json!({"listChanged": false}));
        merge_capability(
            &mut acc,
            &serde_json::json!({"listChanged": true, "subscribe": true}),
        );
        assert_eq!(
            acc,
            serde_json::json!({"listChanged": true, "subscribe": true})
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
