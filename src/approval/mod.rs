//! Holding dangerous calls for a human.
//!
//! Owns: detecting the consent envelope ([`envelope`]), the [`Broker`] that keeps pending
//! approvals and wakes the held call when a human decides, grants (allow-always), the
//! tamper-evident audit log ([`audit`]), and the local control API that approval channels use
//! ([`control`]).
//!
//! Must not: ever let an `action_id` reach the agent or the info-level log, or let the agent
//! decide. Every failure denies (fail closed).

pub mod audit;
pub mod connect;
pub mod control;
pub mod envelope;
pub mod openclaw;
pub mod postgres;
pub mod store;
pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use crate::util::{lock, now_secs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    AllowOnce,
    AllowAlways,
    Deny,
}

impl Decision {
    /// The name stores and the control API use (`allow-once`, `allow-always`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::AllowOnce => "allow-once",
            Decision::AllowAlways => "allow-always",
            Decision::Deny => "deny",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow-once" => Ok(Decision::AllowOnce),
            "allow-always" => Ok(Decision::AllowAlways),
            "deny" => Ok(Decision::Deny),
            other => Err(format!(
                "unknown decision `{other}` (allow-once, allow-always or deny)"
            )),
        }
    }
}

/// What an approver sees. Never contains the `action_id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApprovalInfo {
    pub id: String,
    pub agent: String,
    pub upstream: String,
    pub tool: String,
    pub summary: String,
    /// The call's arguments as canonical JSON, long values cut for display.
    pub arguments: String,
    /// SHA-256 of the exact arguments.
    pub arguments_sha256: String,
    /// `envelope` (the server asked) or `policy` (the operator's rules asked).
    pub kind: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// The process holding the call (its pid), so that a restart closes only approvals whose
    /// process is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// Whether the process named by an approval's `instance` (a pid) still runs.
fn process_alive(pid: &str) -> bool {
    pid.parse::<i32>()
        .ok()
        .is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Allowed { always: bool },
    Denied,
    Expired,
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    pub id: String,
    pub agent: String,
    pub upstream: String,
    pub tool: String,
    pub created_at: u64,
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Narrowed to calls with exactly these arguments (their SHA-256), if set.
    #[serde(default)]
    pub arguments_sha256: Option<String>,
}

/// How a held call's approval ended, as the store has it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Decided(Decision, String),
    /// Closed without a decision (`abandoned`, `expired`, …).
    Closed(String),
}

impl Ending {
    /// From a stored approval's status, decision and decider: `None` while it is still open.
    fn of(status: String, decision: Option<String>, by: Option<String>) -> Option<Ending> {
        match decision.and_then(|d| d.parse::<Decision>().ok()) {
            Some(d) => Some(Ending::Decided(d, by.unwrap_or_default())),
            None if status == "pending" => None,
            None => Some(Ending::Closed(status)),
        }
    }
}

struct Pending {
    info: ApprovalInfo,
    tx: oneshot::Sender<Ending>,
}

type Held = Arc<Mutex<HashMap<String, Pending>>>;

/// Wakes the held call `id` with how its approval ended (if this process holds it).
fn wake(held: &Held, id: &str, ending: Ending) {
    if let Some(p) = lock(held).remove(id) {
        let _ = p.tx.send(ending);
    }
}

/// Where approvals live: the embedded SQLite database of one process (and of the instances
/// sharing its state directory), or a fleet's PostgreSQL database. The broker's logic is the
/// same for both: every status and every decision goes through the store first (the first
/// decision recorded wins, over an expiry too), then wakes the held call.
enum Backend {
    Local(store::Worker),
    Fleet {
        fleet: Arc<postgres::Fleet>,
        /// Writes nobody waits for, in order (so `flush` can wait for them).
        detached: tokio::sync::mpsc::Sender<Detached>,
    },
}

type Detached = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Queues a write nobody waits for; a full queue (the database slower than the events, e.g. a
/// flood of refused calls) refuses it, logged, rather than growing without bound — as the
/// embedded store's worker does.
fn queue(q: &tokio::sync::mpsc::Sender<Detached>, what: &'static str, job: Detached) {
    if let Err(e) = q.try_send(job) {
        tracing::error!(what, error = %e, "the fleet store's queue is full or stopped; not written");
    }
}

impl Backend {
    async fn record(
        &self,
        info: &ApprovalInfo,
        status: &'static str,
        event: serde_json::Value,
        only_if_open: bool,
    ) -> Result<bool, String> {
        match self {
            Backend::Local(w) => {
                let info = info.clone();
                w.run(move |st| {
                    let changed = st.approval(&info, status, event.get("detail"), only_if_open)?;
                    if changed {
                        st.audit(&event)?;
                    }
                    Ok(changed)
                })
                .await
                .map_err(|e| e.to_string())
            }
            Backend::Fleet { fleet, .. } => fleet.record(info, status, &event, only_if_open).await,
        }
    }

    /// [`Backend::record`] where nothing can wait: queued, failures logged.
    fn record_detached(
        &self,
        info: &ApprovalInfo,
        status: &'static str,
        event: serde_json::Value,
        only_if_open: bool,
    ) {
        let info = info.clone();
        match self {
            Backend::Local(w) => w.submit("an approval event", move |st| {
                let r = st
                    .approval(&info, status, None, only_if_open)
                    .and_then(|changed| if changed { st.audit(&event) } else { Ok(()) });
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
            }),
            Backend::Fleet { fleet, detached } => {
                let fleet = fleet.clone();
                queue(
                    detached,
                    "an approval event",
                    Box::pin(async move {
                        if let Err(e) = fleet.record(&info, status, &event, only_if_open).await {
                            tracing::error!(error = %e, "cannot write the audit log");
                        }
                    }),
                );
            }
        }
    }

    fn audit_detached(&self, event: serde_json::Value) {
        match self {
            Backend::Local(w) => w.submit("an audit entry", move |st| {
                if let Err(e) = st.audit(&event) {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
            }),
            Backend::Fleet { fleet, detached } => {
                let fleet = fleet.clone();
                queue(
                    detached,
                    "an audit entry",
                    Box::pin(async move {
                        if let Err(e) = fleet.audit(&event).await {
                            tracing::error!(error = %e, "cannot write the audit log");
                        }
                    }),
                );
            }
        }
    }

    async fn flush(&self) {
        match self {
            Backend::Local(w) => {
                let _ = w.run(|_| Ok(())).await;
            }
            Backend::Fleet { detached, .. } => {
                let (done, wait) = oneshot::channel();
                let marker: Detached = Box::pin(async move {
                    let _ = done.send(());
                });
                if detached.send(marker).await.is_ok() {
                    let _ = wait.await;
                }
            }
        }
    }

    async fn decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        instance: &str,
    ) -> Result<Option<ApprovalInfo>, String> {
        match self {
            Backend::Local(w) => {
                let (id, by, instance) = (id.to_string(), by.to_string(), instance.to_string());
                w.run(move |st| st.decide(&id, decision, &by, &instance))
                    .await
                    .map_err(|e| e.to_string())
            }
            Backend::Fleet { fleet, .. } => fleet.decide(id, decision, by).await,
        }
    }

    async fn ending(&self, id: &str) -> Result<Option<Ending>, String> {
        match self {
            Backend::Local(w) => {
                let id = id.to_string();
                w.run(move |st| st.ending(&id))
                    .await
                    .map_err(|e| e.to_string())
            }
            Backend::Fleet { fleet, .. } => fleet.ending(id).await,
        }
    }

    /// Approvals waiting for a human that this process can decide: its own (embedded store),
    /// or every replica's (fleet).
    async fn pending(&self, instance: &str) -> Result<Vec<ApprovalInfo>, String> {
        match self {
            Backend::Local(w) => {
                let instance = instance.to_string();
                let mut v = w.run(|st| st.pending()).await.map_err(|e| e.to_string())?;
                v.retain(|i| i.instance.as_deref() == Some(instance.as_str()));
                Ok(v)
            }
            Backend::Fleet { fleet, .. } => fleet.pending().await,
        }
    }

    async fn grants(&self) -> Result<Vec<Grant>, String> {
        match self {
            Backend::Local(w) => w.run(|st| st.grants()).await.map_err(|e| e.to_string()),
            Backend::Fleet { fleet, .. } => fleet.grants().await,
        }
    }

    async fn grant_for(
        &self,
        agent: &str,
        upstream: &str,
        tool: &str,
        args_sha256: &str,
    ) -> Result<Option<Grant>, String> {
        let now = now_secs();
        match self {
            Backend::Local(w) => {
                let (agent, upstream, tool, args) = (
                    agent.to_string(),
                    upstream.to_string(),
                    tool.to_string(),
                    args_sha256.to_string(),
                );
                w.run(move |st| {
                    Ok(st.grants()?.into_iter().find(|g| {
                        g.agent == agent
                            && g.upstream == upstream
                            && g.tool == tool
                            && g.expires_at.is_none_or(|e| e > now)
                            && g.arguments_sha256.as_deref().is_none_or(|d| d == args)
                    }))
                })
                .await
                .map_err(|e| e.to_string())
            }
            Backend::Fleet { fleet, .. } => {
                fleet
                    .grant_for(agent, upstream, tool, args_sha256, now)
                    .await
            }
        }
    }

    async fn add_grant(&self, g: &Grant) -> Result<(), String> {
        match self {
            Backend::Local(w) => {
                let g = g.clone();
                w.run(move |st| st.add_grant(&g))
                    .await
                    .map_err(|e| e.to_string())
            }
            Backend::Fleet { fleet, .. } => fleet.add_grant(g).await,
        }
    }

    async fn remove_grant(&self, id: &str) -> Result<bool, String> {
        match self {
            Backend::Local(w) => {
                let id = id.to_string();
                w.run(move |st| st.remove_grant(&id))
                    .await
                    .map_err(|e| e.to_string())
            }
            Backend::Fleet { fleet, .. } => fleet.remove_grant(id).await,
        }
    }
}

pub struct Broker {
    held: Held,
    /// `None` (the store could not be opened): every approval is denied (fail closed).
    store: Option<Backend>,
    /// What approvals held here are marked with: the pid (embedded store; a restart closes
    /// only approvals whose process is gone) or the fleet replica's id.
    instance: String,
    events: broadcast::Sender<String>,
    /// How long new grants live (`None`: until revoked) and whether they are narrowed to the
    /// exact arguments; from the config, swapped on reload.
    grant_policy: std::sync::RwLock<(Option<Duration>, bool)>,
    webhooks: std::sync::RwLock<Arc<webhook::Webhooks>>,
    /// The OpenClaw gateway held calls are also put to, if any (swapped on reload).
    openclaw: std::sync::RwLock<Option<Arc<crate::config::OpenClawChannel>>>,
    /// The links people are given to sign in to upstreams for themselves (`per = "user"`).
    pub links: connect::Links,
    /// The fleet's heartbeat, listener and writer tasks.
    _tasks: Vec<crate::task::Owned>,
}

pub fn random_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if getrandom::fill(&mut b).is_err() {
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Canonical JSON of a value (object keys sorted), for digests and display.
pub fn canonical(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect(),
                )
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// Arguments for display: canonical JSON, long string values cut (the digest covers the whole).
pub fn display_arguments(canonical: &str) -> String {
    const MAX: usize = 2000;
    if canonical.len() <= MAX {
        return canonical.to_string();
    }
    let mut end = MAX;
    while !canonical.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &canonical[..end], canonical.len())
}

/// Closes the approval when the held call goes away without a decision (the agent cancelled,
/// its session ended) and records that.
struct PendingGuard<'a> {
    broker: &'a Broker,
    id: String,
    done: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(p) = lock(&self.broker.held).remove(&self.id) {
            // Dropped, so nothing can wait here: recorded without waiting (unless a decision
            // was recorded first: then it stands in the store, and nobody is left to apply it).
            self.broker
                .record_detached("approval.cancelled", &p.info, true);
            self.broker.notify_closed("approval.cancelled", &p.info);
        }
    }
}

impl Broker {
    /// The broker of a serving instance: on the fleet's database when `[store] url` is set,
    /// else on the embedded store in `dir`.
    pub fn open(dir: PathBuf, cfg: &crate::config::Config) -> Broker {
        match &cfg.store {
            Some(settings) => Broker::on_fleet(settings.clone(), cfg.proxy.listen.to_string()),
            None => Broker::local(dir),
        }
    }

    fn local(dir: PathBuf) -> Broker {
        let store = match store::SqliteStore::open(&dir)
            .and_then(|s| store::Worker::start(Box::new(s)).map_err(store::StoreError::from))
        {
            Ok(w) => Some(Backend::Local(w)),
            Err(e) => {
                tracing::error!(error = %e, "no approval store: every approval will be denied (fail closed)");
                None
            }
        };
        let broker = Broker::with(store, std::process::id().to_string(), vec![]);
        broker.close_abandoned();
        broker
    }

    fn on_fleet(settings: Arc<crate::config::StoreSettings>, listen: String) -> Broker {
        let fleet = match (
            postgres::Fleet::new(settings, Some(listen)),
            tokio::runtime::Handle::try_current(),
        ) {
            (Ok(f), Ok(_)) => Arc::new(f),
            (Err(e), _) => {
                tracing::error!(error = %e, "no fleet store: every approval will be denied (fail closed)");
                return Broker::with(None, String::new(), vec![]);
            }
            (_, Err(_)) => return Broker::with(None, String::new(), vec![]),
        };
        let mut tasks = fleet.start();
        let (detached, mut queue) = tokio::sync::mpsc::channel::<Detached>(store::QUEUE);
        tasks.push(crate::task::spawn(
            tracing::info_span!("fleet writer"),
            async move {
                while let Some(job) = queue.recv().await {
                    job.await;
                }
            },
        ));
        let broker = Broker::with(
            Some(Backend::Fleet {
                fleet: fleet.clone(),
                detached,
            }),
            fleet.replica(),
            vec![],
        );
        // Decisions and closings from the database wake the calls held here; other
        // replicas' events reach this replica's watchers.
        let (held, events, mut notices) = (
            broker.held.clone(),
            broker.events.clone(),
            fleet.subscribe(),
        );
        tasks.push(crate::task::spawn(
            tracing::info_span!("fleet notices"),
            async move {
                loop {
                    let ids: Vec<String> = match notices.recv().await {
                        Ok(postgres::Notice::Closed(id)) => vec![id],
                        Ok(postgres::Notice::Event(ev)) => {
                            let _ = events.send(ev);
                            continue;
                        }
                        // Notifications may have been missed: look at every call held here.
                        Ok(postgres::Notice::Connected)
                        | Err(broadcast::error::RecvError::Lagged(_)) => {
                            lock(&held).keys().cloned().collect()
                        }
                        // For the tool pins (see Instance).
                        Ok(postgres::Notice::Pins(_)) => continue,
                        Ok(postgres::Notice::Lost) => {
                            let all: Vec<String> = lock(&held).keys().cloned().collect();
                            for id in all {
                                wake(&held, &id, Ending::Closed("abandoned".into()));
                            }
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    for id in ids {
                        if !lock(&held).contains_key(&id) {
                            continue;
                        }
                        match fleet.ending(&id).await {
                            Ok(Some(ending)) => wake(&held, &id, ending),
                            Ok(None) => {}
                            Err(e) => tracing::warn!(approval = %id, error = %e, "cannot read how an approval ended"),
                        }
                    }
                }
            },
        ));
        Broker {
            _tasks: tasks,
            ..broker
        }
    }

    fn with(store: Option<Backend>, instance: String, tasks: Vec<crate::task::Owned>) -> Broker {
        let (events, _) = broadcast::channel(256);
        Broker {
            held: Arc::default(),
            store,
            instance,
            events,
            grant_policy: std::sync::RwLock::new((None, false)),
            webhooks: std::sync::RwLock::new(Arc::new(webhook::Webhooks::new(vec![]))),
            openclaw: std::sync::RwLock::new(None),
            links: connect::Links::default(),
            _tasks: tasks,
        }
    }

    /// The fleet's database, when this broker is on one.
    pub fn fleet(&self) -> Option<&Arc<postgres::Fleet>> {
        match &self.store {
            Some(Backend::Fleet { fleet, .. }) => Some(fleet),
            _ => None,
        }
    }

    /// Approvals a previous process left pending in the embedded store are closed as
    /// abandoned: their agents' calls died with that process. (Several live instances may
    /// share the store: only approvals whose process is gone are closed.) A fleet's replicas
    /// close those of replicas whose heartbeat lapsed instead.
    fn close_abandoned(&self) {
        let Some(Backend::Local(st)) = &self.store else {
            return;
        };
        let events = self.events.clone();
        // On the store's thread, like every store access; queued first, so done before any
        // approval of this process is recorded.
        st.submit("closing abandoned approvals", move |st| {
            let pending = match st.pending() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read pending approvals");
                    return;
                }
            };
            for info in pending {
                if info.instance.as_deref().is_some_and(process_alive) {
                    continue; // another live instance holds it
                }
                tracing::info!(approval = %info.id, "approval left pending by a previous process closed as abandoned");
                let _ = st.approval(&info, "abandoned", None, false);
                let ev = serde_json::json!({"kind": "approval.abandoned", "approval": info});
                let _ = events.send(ev.to_string());
                if let Err(e) = st.audit(&ev) {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
            }
        });
    }

    pub fn set_grant_policy(&self, ttl: Option<Duration>, per_arguments: bool) {
        *self.grant_policy.write().unwrap_or_else(|p| p.into_inner()) = (ttl, per_arguments);
    }

    fn grant_policy(&self) -> (Option<Duration>, bool) {
        *self.grant_policy.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the webhooks (at start and on every config reload).
    pub fn set_webhooks(&self, hooks: Vec<crate::config::Webhook>) {
        *self.webhooks.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(webhook::Webhooks::new(hooks));
    }

    /// Sets the OpenClaw approval channel (at start and on every config reload).
    pub fn set_openclaw(&self, channel: Option<crate::config::OpenClawChannel>) {
        *self.openclaw.write().unwrap_or_else(|p| p.into_inner()) = channel.map(Arc::new);
    }

    fn openclaw(&self) -> Option<Arc<crate::config::OpenClawChannel>> {
        self.openclaw
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn webhooks(&self) -> Arc<webhook::Webhooks> {
        self.webhooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells the webhooks that an approval closed, without waiting.
    fn notify_closed(&self, kind: &'static str, info: &ApprovalInfo) {
        let hooks = self.webhooks();
        if hooks.is_empty() {
            return;
        }
        let info = info.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                hooks.deliver(kind, &info).await;
            });
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Records an event of an approval (its status and the audit log) and tells watchers.
    /// `only_if_open`: only while no decision or closing was recorded first (`Ok(false)`).
    /// A store failure is returned so that the caller can deny.
    async fn emit(
        &self,
        kind: &str,
        info: &ApprovalInfo,
        extra: Option<serde_json::Value>,
        only_if_open: bool,
    ) -> Result<bool, String> {
        let (ev, status) = self.event(kind, info, extra);
        let Some(st) = &self.store else {
            return Err("no approval store".into());
        };
        st.record(info, status, ev, only_if_open).await
    }

    /// [`Broker::emit`] where nothing can wait (a held call dropped).
    fn record_detached(&self, kind: &str, info: &ApprovalInfo, only_if_open: bool) {
        let (ev, status) = self.event(kind, info, None);
        if let Some(st) = &self.store {
            st.record_detached(info, status, ev, only_if_open);
        }
    }

    /// The event for watchers (sent now) and the approval's status it records.
    fn event(
        &self,
        kind: &str,
        info: &ApprovalInfo,
        extra: Option<serde_json::Value>,
    ) -> (serde_json::Value, &'static str) {
        let mut ev = serde_json::json!({"kind": kind, "approval": info});
        if let Some(x) = extra {
            ev["detail"] = x;
        }
        let _ = self.events.send(ev.to_string());
        let status = match kind {
            "approval.requested" => "pending",
            "approval.decided" => "decided",
            "approval.expired" => "expired",
            "approval.cancelled" => "cancelled",
            _ => "failed",
        };
        (ev, status)
    }

    /// Records something that is not about one approval (a refused call, a grant revoked),
    /// without waiting: a refused call is answered at once even while the database is busy.
    pub fn audit(&self, event: serde_json::Value) {
        let _ = self.events.send(event.to_string());
        if let Some(st) = &self.store {
            st.audit_detached(event);
        }
    }

    /// Resolves once everything queued for the store before it is written (jobs run in order).
    pub async fn flush(&self) {
        if let Some(st) = &self.store {
            st.flush().await;
        }
    }

    /// Approvals waiting for a human that this process can decide (on a fleet: every
    /// replica's), oldest first.
    pub async fn list(&self) -> Result<Vec<ApprovalInfo>, String> {
        let st = self.store.as_ref().ok_or("no approval store")?;
        let mut v = st.pending(&self.instance).await?;
        v.sort_by_key(|i| i.created_at);
        Ok(v)
    }

    /// Calls held by this process right now.
    pub fn held(&self) -> usize {
        lock(&self.held).len()
    }

    /// A human's decision. `channel` and `operator` go into the audit log. Recorded in the
    /// store first — the first decision wins, and one that comes after the approval expired
    /// or was cancelled is refused — then the held call wakes (on whichever replica holds it).
    pub async fn decide(
        &self,
        id: &str,
        decision: Decision,
        channel: &str,
        operator: &str,
    ) -> Result<ApprovalInfo, String> {
        self.decide_by(id, decision, format!("{channel}:{operator}"))
            .await
    }

    /// [`Broker::decide`], `by` as the audit log names the decider.
    async fn decide_by(
        &self,
        id: &str,
        decision: Decision,
        by: String,
    ) -> Result<ApprovalInfo, String> {
        let st = self.store.as_ref().ok_or("no approval store")?;
        let info = st
            .decide(id, decision, &by, &self.instance)
            .await?
            .ok_or_else(|| format!("no pending approval `{id}`"))?;
        wake(&self.held, id, Ending::Decided(decision, by));
        Ok(info)
    }

    /// An unexpired grant for (agent, upstream, tool) — and these arguments, for a grant
    /// narrowed to them. Read from the store each time, so a revocation (by any instance or
    /// replica) applies at once. A store that cannot answer grants nothing (fail closed).
    pub async fn grant_for(
        &self,
        agent: &str,
        upstream: &str,
        tool: &str,
        args_sha256: &str,
    ) -> Option<Grant> {
        let st = self.store.as_ref()?;
        st.grant_for(agent, upstream, tool, args_sha256)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read grants");
                None
            })
    }

    pub async fn grants(&self) -> Vec<Grant> {
        let Some(st) = &self.store else {
            return vec![];
        };
        st.grants().await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read grants");
            vec![]
        })
    }

    pub async fn revoke(&self, id: &str) -> bool {
        let Some(st) = &self.store else {
            return false;
        };
        let removed = st.remove_grant(id).await.unwrap_or(false);
        if removed {
            self.audit(serde_json::json!({"kind": "grant.revoked", "grant": id}));
        }
        removed
    }

    /// Holds until a human decides, the approval expires, or the caller drops this future
    /// (cancellation). Fails closed on any error.
    pub async fn request(&self, mut info: ApprovalInfo, expiry: Duration) -> Outcome {
        info.id = random_id(6);
        info.instance = Some(match self.fleet() {
            Some(f) => f.replica(),
            None => self.instance.clone(),
        });
        info.created_at = now_secs();
        info.expires_at = info.created_at + expiry.as_secs();
        let deadline = tokio::time::Instant::now() + expiry;
        let (tx, mut rx) = oneshot::channel();
        lock(&self.held).insert(
            info.id.clone(),
            Pending {
                info: info.clone(),
                tx,
            },
        );
        let mut guard = PendingGuard {
            broker: self,
            id: info.id.clone(),
            done: false,
        };
        // Ends the approval here without a decision: no longer held, and recorded.
        let fail = |guard: &mut PendingGuard<'_>| {
            guard.done = true;
            lock(&self.held).remove(&info.id);
        };
        match self.emit("approval.requested", &info, None, false).await {
            Ok(true) => {}
            Ok(false) => {
                fail(&mut guard);
                return Outcome::Failed("approval id collision".into());
            }
            Err(e) => {
                fail(&mut guard);
                return Outcome::Failed(e);
            }
        }
        tracing::info!(approval = %info.id, agent = %info.agent, upstream = %info.upstream, tool = %info.tool, "call held for approval");
        // A configured channel that cannot be reached means no human will hear of this: deny.
        let hooks = self.webhooks();
        if !hooks.deliver("approval.requested", &info).await {
            fail(&mut guard);
            let _ = self
                .emit(
                    "approval.failed",
                    &info,
                    Some(serde_json::json!({"reason": "no webhook accepted the event"})),
                    true,
                )
                .await;
            return Outcome::Failed("no approval channel could be reached".into());
        }
        // OpenClaw: its reviewers and chats decide too; unreachable, it fails closed like a
        // webhook nobody accepts.
        let mut openclaw = match self.openclaw() {
            None => None,
            Some(ch) => match openclaw::open(&ch, &info, expiry).await {
                Ok(t) => Some(t),
                Err(e) => {
                    fail(&mut guard);
                    tracing::warn!(approval = %info.id, "OpenClaw approval channel: {e}");
                    let _ = self
                        .emit(
                            "approval.failed",
                            &info,
                            Some(serde_json::json!({"reason": format!("OpenClaw: {e}")})),
                            true,
                        )
                        .await;
                    self.notify_closed("approval.failed", &info);
                    return Outcome::Failed("no approval channel could be reached".into());
                }
            },
        };
        let ending = {
            let mut from_openclaw = Box::pin(async {
                match openclaw.as_mut() {
                    Some(t) => t.decision().await,
                    None => std::future::pending().await,
                }
            });
            let mut asked_openclaw = false;
            loop {
                tokio::select! {
                    r = &mut rx => break r.unwrap_or(Ending::Closed("closed without a decision".into())),
                    d = &mut from_openclaw, if !asked_openclaw => {
                        // Recorded like any decision (the first one wins); the winner's
                        // decision then arrives on `rx`.
                        asked_openclaw = true;
                        if let Err(e) = self.decide_by(&info.id, d, "openclaw".into()).await {
                            tracing::info!(approval = %info.id, "OpenClaw's decision came second: {e}");
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        match self.emit("approval.expired", &info, None, true).await {
                            Ok(true) => {
                                fail(&mut guard);
                                self.notify_closed("approval.expired", &info);
                                return Outcome::Expired;
                            }
                            // A decision (or a closing) was recorded first: it stands.
                            Ok(false) => match self.ending(&info.id).await {
                                Some(e) => break e,
                                None => {
                                    fail(&mut guard);
                                    return Outcome::Failed("the approval's ending could not be read".into());
                                }
                            },
                            Err(e) => {
                                fail(&mut guard);
                                return Outcome::Failed(e);
                            }
                        }
                    }
                }
            }
        };
        lock(&self.held).remove(&info.id);
        guard.done = true;
        let (decision, by) = match ending {
            Ending::Decided(d, by) => (d, by),
            Ending::Closed(status) => {
                tracing::warn!(approval = %info.id, status = %status, "approval closed without a decision");
                return Outcome::Failed(format!("the approval was closed ({status})"));
            }
        };
        if let Some(t) = openclaw.as_mut() {
            t.settle(decision);
        }
        drop(openclaw);
        self.notify_closed("approval.decided", &info);
        let detail = Some(serde_json::json!({"decision": decision, "by": by}));
        if let Err(e) = self.emit("approval.decided", &info, detail, false).await {
            return Outcome::Failed(e);
        }
        match decision {
            Decision::Deny => Outcome::Denied,
            Decision::AllowOnce => Outcome::Allowed { always: false },
            Decision::AllowAlways => {
                let grant = Grant {
                    id: random_id(6),
                    agent: info.agent.clone(),
                    upstream: info.upstream.clone(),
                    tool: info.tool.clone(),
                    created_at: now_secs(),
                    expires_at: self.grant_policy().0.map(|t| now_secs() + t.as_secs()),
                    arguments_sha256: self.grant_policy().1.then(|| info.arguments_sha256.clone()),
                };
                if let Some(st) = &self.store {
                    if let Err(e) = st.add_grant(&grant).await {
                        tracing::error!(error = %e, "cannot store the grant");
                    }
                }
                self.audit(serde_json::json!({"kind": "grant.created", "grant": grant}));
                Outcome::Allowed { always: true }
            }
        }
    }

    /// How approval `id` ended, from the store (after an update found it no longer open).
    async fn ending(&self, id: &str) -> Option<Ending> {
        let st = self.store.as_ref()?;
        // Woken meanwhile by the decision itself (recorded by this process)?
        st.ending(id).await.ok().flatten()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn info() -> ApprovalInfo {
        ApprovalInfo {
            id: String::new(),
            agent: "a".into(),
            upstream: "u".into(),
            tool: "t".into(),
            summary: "s".into(),
            arguments: "{}".into(),
            arguments_sha256: "0".into(),
            kind: "envelope".into(),
            created_at: 0,
            expires_at: 0,
            instance: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expires_on_paused_time_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::local(dir.path().to_path_buf());
        let started = tokio::time::Instant::now();
        assert_eq!(
            b.request(info(), Duration::from_secs(600)).await,
            Outcome::Expired
        );
        assert!(started.elapsed() >= Duration::from_secs(600));
        assert!(b.list().await.unwrap().is_empty());
        let rows = store::audit_rows(dir.path()).unwrap();
        let log: String = rows.iter().map(|r| r.event.clone()).collect();
        assert!(log.contains("approval.requested") && log.contains("approval.expired"));
        assert_eq!(store::verify_dir(dir.path()).map(|v| v.entries), Ok(2));
    }

    /// A broker on `dir` and a call it holds (already pending).
    async fn held_call(dir: &std::path::Path) -> (Arc<Broker>, tokio::task::JoinHandle<Outcome>) {
        let b = Arc::new(Broker::local(dir.to_path_buf()));
        let b2 = b.clone();
        let held = tokio::spawn(async move { b2.request(info(), Duration::from_secs(600)).await });
        while b.list().await.unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        (b, held)
    }

    // Real time: the store's thread is outside the runtime, and paused time would run on to
    // the expiry while the decision is being written.
    #[tokio::test]
    async fn decisions_wake_the_held_call_and_allow_always_grants() {
        let dir = tempfile::tempdir().unwrap();
        let (b, held) = held_call(dir.path()).await;
        let id = b.list().await.unwrap()[0].id.clone();
        assert!(b
            .decide("nope", Decision::Deny, "test", "me")
            .await
            .is_err());
        b.decide(&id, Decision::AllowAlways, "test", "me")
            .await
            .unwrap();
        assert_eq!(held.await.unwrap(), Outcome::Allowed { always: true });
        assert!(b.grant_for("a", "u", "t", "0").await.is_some());
        assert!(b.grant_for("a", "u", "other", "0").await.is_none());
        let g = b.grants().await[0].id.clone();
        assert!(b.revoke(&g).await);
        assert!(b.grant_for("a", "u", "t", "0").await.is_none());
    }

    #[tokio::test]
    async fn dropping_the_held_call_cancels_the_approval() {
        let dir = tempfile::tempdir().unwrap();
        let (b, held) = held_call(dir.path()).await;
        held.abort();
        let _ = held.await;
        b.flush().await;
        assert!(b.list().await.unwrap().is_empty());
        b.flush().await;
        let log: String = store::audit_rows(dir.path())
            .unwrap()
            .iter()
            .map(|r| r.event.clone())
            .collect();
        assert!(log.contains("approval.cancelled"), "{log}");
    }
}
