//! A downstream session: one agent's MCP session and the upstream connections serving it.
//!
//! Owns here: answering `initialize` as one server, the session's lifetime, taking each agent
//! message in (one task per request, the in-flight table). Along its seams:
//! - `slots`: each upstream's connection, (re)connection with backoff, config reloads;
//! - `lists`: the merged lists, built per upstream and published as they arrive;
//! - `route`: which upstream a request goes to, with the policy's argument rewrites;
//! - `consent`: holding calls for a human (operator rules, envelopes, grants);
//! - `relay`: forwarding, id remapping, cancellation, server→client requests, notifications;
//! - [`catalog`], `tasks`, [`shared`]: merging, task ids, upstreams shared by sessions.
//!
//! Must not: know the downstream transport. It receives parsed messages and writes serialised
//! ones to [`Sink`]s; the fronts (`crate::downstream`) own sockets and stdio.

pub mod catalog;
mod consent;
mod lists;
mod mrtr;
mod relay;
mod route;
pub mod shared;
mod signin;
mod slots;
mod tasks;

use route::set_arguments;
pub(crate) use slots::backoff;
use slots::{Slot, SlotState};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Config, Upstream as UpstreamConfig};
use crate::identity::Caller;
use crate::jsonrpc::{self, code, Edit, Kind, Message};
use crate::mcp;
use crate::mcp::params::Params;
use crate::policy;
use crate::upstream::{Connection, Event, EventHandler, Handshake, Inbound, UpstreamError};
use crate::util::lock;
use catalog::{Fetched, ListKind};

/// Where messages for the agent go, one JSON-RPC message per item (kept parsed, so a front can
/// tell an answer from a notification without parsing again).
pub type Sink = mpsc::Sender<Message>;

/// Time allowed for an internal list request (`tools/list` pages) to one upstream.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Asked by mcp-warden itself (a 2026-07-28 upstream's input request put to a 2025
    /// agent, `mrtr`): the agent's answer goes here, not upstream.
    waiter: Option<tokio::sync::oneshot::Sender<Message>>,
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
    /// The caller's latest identity provider token (its upstream connections read it).
    subject: Arc<crate::identity::SubjectCell>,
    /// The HTTP front's origin as this session's agent reaches it, where the pages for
    /// upstream sign-ins are; none over stdio.
    front_origin: std::sync::OnceLock<String>,
    /// The URL elicitations this session's agent was sent for upstream sign-ins, as
    /// (upstream, elicitation id): each is completed when that upstream comes up.
    sign_in_asked: Mutex<Vec<(String, String)>>,
    /// Woken when an upstream comes up (a call waiting for a sign-in looks again).
    upstream_up: tokio::sync::Notify,
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
    /// An upstream's `input_required` result goes to the agent as it is (the agent speaks
    /// 2026-07-28) instead of being asked of it as server→client requests.
    passes_input_required: AtomicBool,
    closed: AtomicBool,
    this: Weak<Session>,
}

/// The `initialize` request of a session mcp-warden opens itself (operator commands, the
/// sessions serving 2026-07-28 agents), as client `name`, declaring that it can answer
/// sampling, elicitation (form and URL) and roots: some servers list tools only for clients
/// that can, and whether an agent can is checked when it is asked.
pub fn own_initialize(name: &str) -> Message {
    jsonrpc::request(
        "0",
        "initialize",
        serde_json::json!({
            "protocolVersion": mcp::LATEST_VERSION,
            "capabilities": {
                "roots": {"listChanged": true},
                "sampling": {},
                "elicitation": {"form": {}, "url": {}}
            },
            "clientInfo": {"name": name, "version": env!("CARGO_PKG_VERSION")}
        }),
    )
}

impl Session {
    /// Creates the session for an `initialize` request and connects every enabled upstream in
    /// parallel (each bounded by its startup timeout; one failing does not stop the others).
    /// Returns the session and the `initialize` response for the agent.
    /// `subject`: the access token a [`Caller::Signed`] presented (for token exchange).
    pub async fn initialize(
        id: String,
        cfg: Arc<Config>,
        caller: Caller,
        subject: Option<crate::identity::SubjectToken>,
        shared: &crate::instance::Instance,
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
        let subject_cell = Arc::new(crate::identity::SubjectCell::default());
        if let Some(t) = subject {
            subject_cell.set(t);
        }
        let handshake = Handshake {
            principal: caller.agent().cloned(),
            person: match &caller {
                Caller::Signed { subject, .. } => Some(subject.clone()),
                _ => None,
            },
            subject: Some(subject_cell.clone()),
            protocol_version: version.to_string(),
            capabilities: raw(params.capabilities, "{}"),
            client_info: raw(params.client_info, r#"{"name":"mcp-warden","version":"0"}"#),
        };
        let agent = caller.agent().and_then(|name| cfg.agent(name).cloned());
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
            subject: subject_cell,
            front_origin: std::sync::OnceLock::new(),
            sign_in_asked: Mutex::default(),
            upstream_up: tokio::sync::Notify::new(),
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
            passes_input_required: AtomicBool::new(false),
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
        let (caps, instructions) = self.merged_capabilities();
        for (i, key) in [(1, "prompts"), (2, "resources")] {
            if caps.contains_key(key) {
                lock(&self.announced)[i] = true;
            }
        }
        let mut result = serde_json::json!({
            "protocolVersion": self.protocol_version,
            "capabilities": caps,
            "serverInfo": {"name": self.cfg().proxy.server_name, "version": env!("CARGO_PKG_VERSION")},
        });
        if let Some(i) = instructions {
            result["instructions"] = serde_json::Value::String(i);
        }
        jsonrpc::response(id, result)
    }

    /// The capabilities of the upstreams that are up, merged as one server's, and their
    /// instructions. mcp-warden itself announces list changes (an upstream coming or going
    /// changes them).
    pub fn merged_capabilities(
        &self,
    ) -> (serde_json::Map<String, serde_json::Value>, Option<String>) {
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
        let tools = caps.entry("tools").or_insert_with(|| serde_json::json!({}));
        if let Some(t) = tools.as_object_mut() {
            t.insert("listChanged".into(), serde_json::Value::Bool(true));
        }
        for key in ["prompts", "resources"] {
            if let Some(obj) = caps.get_mut(key).and_then(|v| v.as_object_mut()) {
                obj.insert("listChanged".into(), serde_json::Value::Bool(true));
            }
        }
        let instructions = (!instructions.is_empty()).then(|| instructions.join("\n\n"));
        (caps, instructions)
    }

    /// This session serves 2026-07-28 agents: an upstream's multi round-trip results reach
    /// them as they are.
    pub fn pass_input_required(&self) {
        self.passes_input_required.store(true, Ordering::Relaxed);
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
        // Consent holds running beside tasks end with the session.
        lock(&self.tasks).clear();
        for slot in self.all_slots() {
            *lock(&slot.state) = SlotState::Disabled;
        }
        tracing::info!(session = %self.id, "session closed");
    }

    pub fn cfg(&self) -> Arc<Config> {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn send_general(&self, msg: Message) {
        if self.general.try_send(msg).is_err() {
            tracing::debug!(session = %self.id, "agent's notification stream is full or closed; message dropped");
        }
    }

    // ---- agent → proxy ----

    /// Handles one message from the agent. Requests are served on their own task; their answer
    /// (and every message related to them) goes to `sink`.
    pub fn handle(&self, msg: Message, sink: Sink) {
        self.touch();
        match msg.kind() {
            Kind::Request => {
                let params = Params::of(&msg);
                self.start_request(msg, params, sink)
            }
            Kind::Notification => self.on_agent_notification(msg),
            Kind::Response => self.on_agent_response(msg),
        }
    }

    /// Handles a request whose `params` its front read already (a 2026-07-28 front, to
    /// validate it): the one pass over them is shared.
    pub fn handle_request(&self, msg: Message, params: Params, sink: Sink) {
        debug_assert_eq!(msg.kind(), Kind::Request);
        self.touch();
        self.start_request(msg, params, sink);
    }

    /// Handles a JSON-RPC batch (both fronts): each item as if sent alone, the requests'
    /// answers collected into one array (items that could not be parsed answered in place);
    /// anything else a request produces meanwhile (progress, logging, server→client requests)
    /// goes to `other`. `None` when nothing in the batch is answered (only notifications and
    /// responses).
    pub async fn batch(
        &self,
        items: Vec<Result<Message, jsonrpc::ParseError>>,
        other: Sink,
    ) -> Option<Bytes> {
        let (tx, mut rx) = mpsc::channel::<Message>(64);
        let mut answers: Vec<Message> = vec![];
        let mut waiting = 0usize;
        for item in items {
            match item {
                Err(e) => answers.push(e.answer()),
                Ok(m) => {
                    if m.kind() == Kind::Request {
                        waiting += 1;
                    }
                    self.handle(m, tx.clone());
                }
            }
        }
        drop(tx);
        while waiting > 0 {
            let Some(m) = rx.recv().await else { break };
            if m.kind() == Kind::Response {
                answers.push(m);
                waiting -= 1;
            } else {
                let _ = other.send(m).await;
            }
        }
        (!answers.is_empty()).then(|| jsonrpc::batch_array(&answers))
    }

    fn start_request(&self, msg: Message, params: Params, sink: Sink) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let id = msg.id_str().unwrap_or("null").to_string();
        let progress_token = Params::text(&msg, params.progress_token).map(str::to_string);
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
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let reply = this.serve(msg, &params, &key).await;
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

    async fn serve(&self, msg: Message, params: &Params, key: &str) -> Option<Message> {
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
            "tools/call" => self.route_named(&msg, params, ListKind::Tools, key).await,
            "prompts/get" => Box::pin(self.route_named(&msg, params, ListKind::Prompts, key)).await,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Box::pin(self.route_uri(&msg, key)).await
            }
            "completion/complete" => Box::pin(self.route_completion(&msg, key)).await,
            "logging/setLevel" => Box::pin(self.broadcast_request(&msg, "logging")).await,
            "tasks/get" | "tasks/result" | "tasks/update" | "tasks/cancel" => {
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

    /// The `x-mcp-header` annotations of the tool `exposed` as this session's agent sees it
    /// (empty for most tools: only one whose definition mentions the key is read).
    pub async fn header_params(&self, exposed: &str) -> Vec<mcp::header_params::HeaderParam> {
        let list = self.list(ListKind::Tools).await;
        let Some(item) = list.get(exposed).map(catalog::Entry::item) else {
            return vec![];
        };
        // Every 2026 tools/call asks: the searcher is built once.
        static ANNOTATION: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| {
                memchr::memmem::Finder::new(mcp::header_params::ANNOTATION.as_bytes())
            });
        if ANNOTATION.find(&item).is_none() {
            return vec![];
        }
        serde_json::from_slice::<serde_json::Value>(&item)
            .ok()
            .and_then(|t| mcp::header_params::annotations(&t["inputSchema"]).ok())
            .unwrap_or_default()
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
        let fetched = self.fetch_all(idx, ListKind::Tools).await.ok().flatten()?;
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
                SlotState::SignedOut { by } => Some((s.name(), format!("not signed in: {by}"))),
                _ => None,
            })
            .collect()
    }

    /// The agent this session serves (`None`: the single-user case, which sees everything).
    pub fn agent(&self) -> Option<Arc<crate::config::Agent>> {
        self.agent.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn agent_name(&self) -> String {
        self.caller_name().to_string()
    }

    /// The access token the caller presented with its latest request (a [`Caller::Signed`]).
    pub fn set_subject(&self, t: crate::identity::SubjectToken) {
        self.subject.set(t);
    }

    /// The caller's name as policy, audit and metrics know it (`user` in single-user mode).
    fn caller_name(&self) -> &str {
        match self.caller.agent() {
            Some(n) => n,
            None => "user",
        }
    }
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
}
