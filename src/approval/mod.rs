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
pub mod control;
pub mod envelope;
pub mod openclaw;
pub mod store;
pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
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

struct Pending {
    info: ApprovalInfo,
    tx: oneshot::Sender<(Decision, String)>,
}

pub struct Broker {
    pending: Mutex<HashMap<String, Pending>>,
    /// `None` (the store could not be opened): every approval is denied (fail closed).
    store: Option<store::Worker>,
    events: broadcast::Sender<String>,
    /// How long new grants live (`None`: until revoked) and whether they are narrowed to the
    /// exact arguments; from the config, swapped on reload.
    grant_policy: std::sync::RwLock<(Option<Duration>, bool)>,
    webhooks: std::sync::RwLock<std::sync::Arc<webhook::Webhooks>>,
    /// The OpenClaw gateway held calls are also put to, if any (swapped on reload).
    openclaw: std::sync::RwLock<Option<std::sync::Arc<crate::config::OpenClawChannel>>>,
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

/// Removes the pending entry when the held call goes away without a decision (the agent
/// cancelled, its session ended) and records that.
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
        if let Some(p) = lock(&self.broker.pending).remove(&self.id) {
            // Dropped, so nothing can wait here: recorded without waiting.
            self.broker.emit_detached("approval.cancelled", &p.info);
            self.broker.notify_closed("approval.cancelled", &p.info);
        }
    }
}

impl Broker {
    pub fn open(dir: PathBuf) -> Broker {
        let store = match store::SqliteStore::open(&dir)
            .and_then(|s| store::Worker::start(Box::new(s)).map_err(store::StoreError::from))
        {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "no approval store: every approval will be denied (fail closed)");
                None
            }
        };
        let (events, _) = broadcast::channel(256);
        let broker = Broker {
            pending: Mutex::new(HashMap::new()),
            store,
            events,
            grant_policy: std::sync::RwLock::new((None, false)),
            webhooks: std::sync::RwLock::new(std::sync::Arc::new(webhook::Webhooks::new(vec![]))),
            openclaw: std::sync::RwLock::new(None),
        };
        broker.close_abandoned();
        broker
    }

    /// Approvals a previous process left pending are closed as abandoned: their agents' calls
    /// died with that process. (Several live instances may share the store: only approvals
    /// whose process is gone should be closed — the store marks each with its instance below.)
    fn close_abandoned(&self) {
        let Some(st) = &self.store else { return };
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
                let _ = st.approval(&info, "abandoned", None);
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
            std::sync::Arc::new(webhook::Webhooks::new(hooks));
    }

    /// Sets the OpenClaw approval channel (at start and on every config reload).
    pub fn set_openclaw(&self, channel: Option<crate::config::OpenClawChannel>) {
        *self.openclaw.write().unwrap_or_else(|p| p.into_inner()) =
            channel.map(std::sync::Arc::new);
    }

    fn openclaw(&self) -> Option<std::sync::Arc<crate::config::OpenClawChannel>> {
        self.openclaw
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn webhooks(&self) -> std::sync::Arc<webhook::Webhooks> {
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

    /// Records an event of an approval (its status and the audit log) and tells watchers. An
    /// audit failure is returned so that the caller can deny.
    async fn emit(
        &self,
        kind: &str,
        info: &ApprovalInfo,
        extra: Option<serde_json::Value>,
    ) -> Result<(), String> {
        let (ev, status) = self.event(kind, info, extra);
        let Some(st) = &self.store else {
            return Err("no approval store".into());
        };
        let info = info.clone();
        st.run(move |st| {
            st.approval(&info, status, ev.get("detail"))?;
            st.audit(&ev)
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// [`Broker::emit`] where nothing can wait (a held call dropped): queued, failures logged.
    fn emit_detached(&self, kind: &str, info: &ApprovalInfo) {
        let (ev, status) = self.event(kind, info, None);
        if let Some(st) = &self.store {
            let info = info.clone();
            st.submit("an approval event", move |st| {
                if let Err(e) = st.approval(&info, status, None).and_then(|_| st.audit(&ev)) {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
            });
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
            st.submit("an audit entry", move |st| {
                if let Err(e) = st.audit(&event) {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
            });
        }
    }

    /// Resolves once everything queued for the store before it is written (jobs run in order).
    pub async fn flush(&self) {
        if let Some(st) = &self.store {
            let _ = st.run(|_| Ok(())).await;
        }
    }

    pub fn list(&self) -> Vec<ApprovalInfo> {
        let mut v: Vec<ApprovalInfo> = lock(&self.pending)
            .values()
            .map(|p| p.info.clone())
            .collect();
        v.sort_by_key(|i| i.created_at);
        v
    }

    /// A human's decision. `channel` and `operator` go into the audit log.
    pub fn decide(
        &self,
        id: &str,
        decision: Decision,
        channel: &str,
        operator: &str,
    ) -> Result<ApprovalInfo, String> {
        let p = lock(&self.pending)
            .remove(id)
            .ok_or_else(|| format!("no pending approval `{id}`"))?;
        let info = p.info.clone();
        let _ = p.tx.send((decision, format!("{channel}:{operator}")));
        Ok(info)
    }

    /// An unexpired grant for (agent, upstream, tool).
    /// An unexpired grant for (agent, upstream, tool) — and these arguments, for a grant
    /// narrowed to them. Read from the store each time, so a revocation (by any instance)
    /// applies at once.
    pub async fn grant_for(
        &self,
        agent: &str,
        upstream: &str,
        tool: &str,
        args_sha256: &str,
    ) -> Option<Grant> {
        let now = now_secs();
        self.grants().await.into_iter().find(|g| {
            g.agent == agent
                && g.upstream == upstream
                && g.tool == tool
                && g.expires_at.is_none_or(|e| e > now)
                && g.arguments_sha256
                    .as_deref()
                    .is_none_or(|d| d == args_sha256)
        })
    }

    pub async fn grants(&self) -> Vec<Grant> {
        let Some(st) = &self.store else {
            return vec![];
        };
        st.run(|st| st.grants()).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read grants");
            vec![]
        })
    }

    pub async fn revoke(&self, id: &str) -> bool {
        let Some(st) = &self.store else {
            return false;
        };
        let id_owned = id.to_string();
        let removed = st
            .run(move |st| st.remove_grant(&id_owned))
            .await
            .unwrap_or(false);
        if removed {
            self.audit(serde_json::json!({"kind": "grant.revoked", "grant": id}));
        }
        removed
    }

    /// Holds until a human decides, the approval expires, or the caller drops this future
    /// (cancellation). Fails closed on any error.
    pub async fn request(&self, mut info: ApprovalInfo, expiry: Duration) -> Outcome {
        info.id = random_id(6);
        info.instance = Some(std::process::id().to_string());
        info.created_at = now_secs();
        info.expires_at = info.created_at + expiry.as_secs();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(
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
        if let Err(e) = self.emit("approval.requested", &info, None).await {
            lock(&self.pending).remove(&info.id);
            guard.done = true;
            return Outcome::Failed(e);
        }
        tracing::info!(approval = %info.id, agent = %info.agent, upstream = %info.upstream, tool = %info.tool, "call held for approval");
        // A configured channel that cannot be reached means no human will hear of this: deny.
        let hooks = self.webhooks();
        if !hooks.deliver("approval.requested", &info).await {
            guard.done = true;
            lock(&self.pending).remove(&info.id);
            let _ = self
                .emit(
                    "approval.failed",
                    &info,
                    Some(serde_json::json!({"reason": "no webhook accepted the event"})),
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
                    guard.done = true;
                    lock(&self.pending).remove(&info.id);
                    tracing::warn!(approval = %info.id, "OpenClaw approval channel: {e}");
                    let _ = self
                        .emit(
                            "approval.failed",
                            &info,
                            Some(serde_json::json!({"reason": format!("OpenClaw: {e}")})),
                        )
                        .await;
                    self.notify_closed("approval.failed", &info);
                    return Outcome::Failed("no approval channel could be reached".into());
                }
            },
        };
        let from_openclaw = async {
            match openclaw.as_mut() {
                Some(t) => t.decision().await,
                None => std::future::pending().await,
            }
        };
        let decided = tokio::select! {
            r = rx => r.ok(),
            d = from_openclaw => {
                // Decided in OpenClaw: no longer pending here.
                lock(&self.pending).remove(&info.id);
                Some((d, "openclaw".to_string()))
            }
            _ = tokio::time::sleep(expiry) => {
                guard.done = true;
                lock(&self.pending).remove(&info.id);
                let _ = self.emit("approval.expired", &info, None).await;
                self.notify_closed("approval.expired", &info);
                return Outcome::Expired;
            }
        };
        if let (Some(t), Some((d, _))) = (openclaw.as_mut(), &decided) {
            t.settle(*d);
        }
        drop(openclaw);
        let Some((decision, by)) = decided else {
            return Outcome::Failed("approval closed without a decision".into());
        };
        guard.done = true;
        self.notify_closed("approval.decided", &info);
        let detail = Some(serde_json::json!({"decision": decision, "by": by}));
        if let Err(e) = self.emit("approval.decided", &info, detail).await {
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
                    let g = grant.clone();
                    if let Err(e) = st.run(move |st| st.add_grant(&g)).await {
                        tracing::error!(error = %e, "cannot store the grant");
                    }
                }
                self.audit(serde_json::json!({"kind": "grant.created", "grant": grant}));
                Outcome::Allowed { always: true }
            }
        }
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
        let b = Broker::open(dir.path().to_path_buf());
        let started = tokio::time::Instant::now();
        assert_eq!(
            b.request(info(), Duration::from_secs(600)).await,
            Outcome::Expired
        );
        assert!(started.elapsed() >= Duration::from_secs(600));
        assert!(b.list().is_empty());
        let rows = store::audit_rows(dir.path()).unwrap();
        let log: String = rows.iter().map(|r| r.event.clone()).collect();
        assert!(log.contains("approval.requested") && log.contains("approval.expired"));
        assert_eq!(store::verify_dir(dir.path()).map(|v| v.entries), Ok(2));
    }

    /// A broker on `dir` and a call it holds (already pending).
    async fn held_call(dir: &std::path::Path) -> (Arc<Broker>, tokio::task::JoinHandle<Outcome>) {
        let b = Arc::new(Broker::open(dir.to_path_buf()));
        let b2 = b.clone();
        let held = tokio::spawn(async move { b2.request(info(), Duration::from_secs(600)).await });
        while b.list().is_empty() {
            tokio::task::yield_now().await;
        }
        (b, held)
    }

    #[tokio::test(start_paused = true)]
    async fn decisions_wake_the_held_call_and_allow_always_grants() {
        let dir = tempfile::tempdir().unwrap();
        let (b, held) = held_call(dir.path()).await;
        let id = b.list()[0].id.clone();
        assert!(b.decide("nope", Decision::Deny, "test", "me").is_err());
        b.decide(&id, Decision::AllowAlways, "test", "me").unwrap();
        assert_eq!(held.await.unwrap(), Outcome::Allowed { always: true });
        assert!(b.grant_for("a", "u", "t", "0").await.is_some());
        assert!(b.grant_for("a", "u", "other", "0").await.is_none());
        let g = b.grants().await[0].id.clone();
        assert!(b.revoke(&g).await);
        assert!(b.grant_for("a", "u", "t", "0").await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_held_call_cancels_the_approval() {
        let dir = tempfile::tempdir().unwrap();
        let (b, held) = held_call(dir.path()).await;
        held.abort();
        let _ = held.await;
        assert!(b.list().is_empty());
        b.flush().await;
        let log: String = store::audit_rows(dir.path())
            .unwrap()
            .iter()
            .map(|r| r.event.clone())
            .collect();
        assert!(log.contains("approval.cancelled"), "{log}");
    }
}
