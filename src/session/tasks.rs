//! Tasks, in both of their shapes: MCP 2025-11-25's (`tools/call` with `params.task`, then
//! `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel` and `notifications/tasks/status`)
//! and 2026-07-28's `io.modelcontextprotocol/tasks` extension (the server decides: a flat
//! `CreateTaskResult` with `resultType: "task"`, then `tasks/get`, which carries the result
//! once completed, `tasks/update` and `tasks/cancel`).
//!
//! Owns: the agent's view of tasks. Every task id the agent sees is mcp-warden's own (random,
//! unguessable), bound to the upstream that created the task and to this session; `tasks/*`
//! reach only tasks this session created (another session's or another upstream's id is
//! "unknown"), and an upstream's status notification for a task that is not this session's is
//! dropped. A tool result reaching the agent through a task goes through the same consent gate
//! as a direct call: an envelope in `tasks/result` is held for a human and answered with the
//! approved call's result (or a refusal); an envelope anywhere else in a task message from a
//! consent upstream is withheld. A 2026-07-28 task is polled, so its human is not waited for
//! inside a `tasks/get`: the hold runs beside the task, which reads as `working` until a human
//! decided, then as completed with the approved call's result (or the refusal). The
//! `action_id` never reaches the agent by any of these routes.
//!
//! Must not: decide policy. Which tool a task may call was decided when the call was routed;
//! the consent flow itself is [`Session::hold`]'s.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ListKind, Session, LIST_TIMEOUT};
use crate::approval::envelope;
use crate::jsonrpc::{self, code, Edit, Message};
use crate::util::lock;

/// Tasks remembered per session; the oldest is forgotten beyond this (its id becomes unknown).
const MAX_TASKS: usize = 1024;

/// What the agent asked of a task-augmented call on a consent upstream, for when its result
/// turns out to be an envelope.
#[derive(Clone)]
pub(super) struct ConsentCall {
    /// The tool's exposed name (looked up again when the result arrives: policy may have
    /// changed meanwhile).
    pub exposed: String,
    /// The call as forwarded, without `task`: what is made again with the confirmation token.
    pub call: Message,
    /// An operator rule already had a human approve this very call.
    pub approved: bool,
}

struct TaskRef {
    upstream: usize,
    /// The upstream's task id, as JSON text (a quoted string).
    upstream_id: String,
    /// A 2026-07-28 task (flat `CreateTaskResult`; its result comes with `tasks/get`).
    flat: bool,
    consent: Option<ConsentCall>,
    /// The answer to the method that carries the result (`tasks/result`; `tasks/get` for a
    /// 2026-07-28 task) once a consent flow settled it (asked again, it is the same; the
    /// server's `action_id` is single use).
    settled: Option<Message>,
    /// A 2026-07-28 task's consent hold, running beside the task until a human decides, and
    /// the task as the upstream last described it (without its result).
    holding: Option<(crate::task::Owned, serde_json::Value)>,
}

#[derive(Default)]
pub(super) struct Tasks {
    by_ours: HashMap<String, TaskRef>,
    order: VecDeque<String>,
}

impl Tasks {
    fn insert(&mut self, ours: String, t: TaskRef) {
        if self.order.len() >= MAX_TASKS {
            if let Some(old) = self.order.pop_front() {
                self.by_ours.remove(&old);
            }
        }
        self.order.push_back(ours.clone());
        self.by_ours.insert(ours, t);
    }

    /// Forgets every task (the session ends): holds beside them end too.
    pub(super) fn clear(&mut self) {
        self.by_ours.clear();
        self.order.clear();
    }

    fn ours_for(&self, upstream: usize, upstream_id: &str) -> Option<&str> {
        self.by_ours
            .iter()
            .find(|(_, t)| t.upstream == upstream && t.upstream_id == upstream_id)
            .map(|(k, _)| k.as_str())
    }
}

#[derive(Deserialize)]
struct TaskId<'a> {
    #[serde(borrow, rename = "taskId")]
    task_id: &'a RawValue,
}

/// A `CreateTaskResult`: 2025-11-25's (`{"task": {"taskId": …}}`) or 2026-07-28's (flat,
/// `{"resultType": "task", "taskId": …}`).
#[derive(Deserialize)]
struct Created<'a> {
    #[serde(borrow, default)]
    task: Option<TaskId<'a>>,
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<&'a str>,
    #[serde(rename = "taskId", borrow, default)]
    task_id: Option<&'a RawValue>,
}

impl<'a> Created<'a> {
    /// The upstream's task id and whether the task is a 2026-07-28 one.
    fn id(&self) -> Option<(&'a RawValue, bool)> {
        match (self.result_type, self.task_id, &self.task) {
            (Some("task"), Some(id), _) => Some((id, true)),
            (None, _, Some(t)) => Some((t.task_id, false)),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct WithMeta<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<RelatedMeta<'a>>,
}

#[derive(Deserialize)]
struct RelatedMeta<'a> {
    #[serde(borrow, rename = "io.modelcontextprotocol/related-task")]
    related: Option<TaskId<'a>>,
}

#[derive(Deserialize)]
struct TaskParam<'a> {
    #[serde(borrow, default)]
    task: Option<&'a RawValue>,
}

/// Whether an answer to `tools/call` can be a created task (it names a `taskId`): one
/// substring search for the common answer.
pub(super) fn may_have_created(reply: &Message) -> bool {
    static TASK_ID: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"taskId\""));
    reply
        .result()
        .is_some_and(|r| TASK_ID.find(r.as_bytes()).is_some())
}

/// Whether a `tools/call` asks for a task (`params.task` present).
pub(super) fn is_task_augmented(msg: &Message) -> bool {
    msg.params()
        .and_then(|p| serde_json::from_str::<TaskParam<'_>>(p).ok())
        .is_some_and(|p| p.task.is_some())
}

/// `call` as a plain call, made again after a human approved: without `params.task`
/// (2025-11-25), and without the tasks extension among the request's client capabilities
/// (2026-07-28: a server must not answer it with a task then).
pub(super) fn without_task(call: &Message) -> Option<Message> {
    let mut params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(call.params()?).ok()?;
    params.remove("task");
    if let Some(ext) = params
        .get_mut("_meta")
        .and_then(|m| m.get_mut(crate::mcp::META_CLIENT_CAPABILITIES))
        .and_then(|c| c.get_mut("extensions"))
        .and_then(serde_json::Value::as_object_mut)
    {
        ext.remove(crate::mcp::TASKS_EXTENSION);
    }
    Some(jsonrpc::request(
        call.id_str()?,
        call.method()?,
        serde_json::Value::Object(params),
    ))
}

fn new_task_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(format!(
        "\"mwt-{}\"",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// The edit that puts `new` (JSON text) where `old` (a borrowed part of `msg`) is.
fn replace(msg: &Message, old: &RawValue, new: &str) -> Option<Message> {
    msg.edited(vec![Edit::new(msg.span_of(old.get()), new)])
        .ok()
}

/// An error for the agent instead of a task message that carried a consent envelope.
fn withheld(id: &str) -> Message {
    jsonrpc::error_response(
        Some(id),
        code::INTERNAL_ERROR,
        "mcp-warden withheld a task message that asked for confirmation",
    )
}

impl Session {
    /// The upstream answered a `tools/call` with a `CreateTaskResult` (2025-11-25's, to a
    /// task-augmented call; or 2026-07-28's, which the server may choose for any call whose
    /// request declared the extension): the task is remembered under an id of ours, which the
    /// agent gets instead. `None`: the answer is not a created task. `consent`: the upstream is
    /// a consent upstream, and this is the call to make again when a human approves.
    pub(super) fn task_created(
        &self,
        upstream: usize,
        reply: &Message,
        augmented: bool,
        consent: Option<ConsentCall>,
    ) -> Option<Message> {
        let created: Created<'_> = serde_json::from_str(reply.result()?).ok()?;
        let (upstream_id, flat) = created.id()?;
        if !upstream_id.get().starts_with('"') || !(flat || augmented) {
            return None;
        }
        let consent_upstream = self.slot(upstream).is_some_and(|s| s.cfg().consent);
        if consent_upstream && carries_envelope(reply) {
            tracing::warn!(session = %self.id, "a created task carried a consent envelope; withheld");
            return Some(withheld(reply.id_str().unwrap_or("null")));
        }
        let ours = new_task_id()?;
        let out = replace(reply, upstream_id, &ours)?;
        lock(&self.tasks).insert(
            ours,
            TaskRef {
                upstream,
                upstream_id: upstream_id.get().to_string(),
                flat,
                consent,
                settled: None,
                holding: None,
            },
        );
        Some(out)
    }

    /// `tasks/get`, `tasks/result`, `tasks/update`, `tasks/cancel`: only for this session's
    /// tasks, forwarded to the upstream that owns the task under its own id, answered under
    /// ours. Any other id is unknown (and the attempt audited).
    pub(super) async fn route_task(&self, msg: &Message, key: &str) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let method = msg.method().unwrap_or_default();
        let Some(param) = msg
            .params()
            .and_then(|p| serde_json::from_str::<TaskId<'_>>(p).ok())
        else {
            return jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: `taskId` is required",
            );
        };
        let ours = param.task_id.get().to_string();
        let found = lock(&self.tasks).by_ours.get(&ours).map(|t| {
            (
                t.upstream,
                t.upstream_id.clone(),
                t.flat,
                t.consent.clone(),
                t.settled.clone(),
                t.holding.is_some(),
            )
        });
        let Some((idx, upstream_id, flat, consent, settled, holding)) = found else {
            self.audit_refusal(method, "task", "unknown task");
            return jsonrpc::error_response(Some(id), code::INVALID_PARAMS, "Unknown task");
        };
        let result_method = if flat { "tasks/get" } else { "tasks/result" };
        if let Some(done) = settled.as_ref().filter(|_| method == result_method) {
            return done.with_id(id);
        }
        if flat && holding && settled.is_none() {
            // The upstream's task ended with an envelope; a human decides meanwhile.
            return self.while_held(&ours, method, msg);
        }
        let Some(out) = replace(msg, param.task_id, &upstream_id) else {
            return jsonrpc::error_response(Some(id), code::INTERNAL_ERROR, "Internal error");
        };
        let reply = self.forward(idx, out, key).await;
        let reply = self.task_reply_ids(&reply, method, &ours).unwrap_or(reply);
        let consent_upstream = self.slot(idx).is_some_and(|s| s.cfg().consent);
        if !consent_upstream {
            return reply;
        }
        if method == result_method {
            let env = match flat {
                true => completed_result(&reply),
                false => reply.result().map(str::to_string),
            }
            .as_deref()
            .and_then(envelope::detect);
            if let Some(env) = env {
                if flat {
                    return self.hold_beside(idx, &ours, consent, env, &reply);
                }
                return Box::pin(self.settle(idx, &ours, consent, env, msg, key)).await;
            }
        }
        if carries_envelope(&reply) {
            tracing::warn!(session = %self.id, %method, "a task message carried a consent envelope outside its result; withheld");
            return withheld(id);
        }
        reply
    }

    /// A 2025-11-25 task's result is a consent envelope: held for a human like a direct
    /// call's (`tasks/result` blocks until the result is there), and the outcome kept as the
    /// task's result.
    async fn settle(
        &self,
        idx: usize,
        ours: &str,
        consent: Option<ConsentCall>,
        env: envelope::Envelope,
        msg: &Message,
        key: &str,
    ) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let outcome = self.approve_task_call(idx, consent, env, id, key).await;
        if let Some(t) = lock(&self.tasks).by_ours.get_mut(ours) {
            t.settled = Some(outcome.clone());
        }
        outcome
    }

    /// The consent flow for a task's call: the outcome is the approved call's answer or the
    /// refusal, under `id`.
    async fn approve_task_call(
        &self,
        idx: usize,
        consent: Option<ConsentCall>,
        env: envelope::Envelope,
        id: &str,
        key: &str,
    ) -> Message {
        let Some(c) = consent else {
            return Self::refusal(id, "the task's call is unknown");
        };
        let list = self.list(ListKind::Tools).await;
        match list.get(&c.exposed).filter(|e| e.upstream == idx) {
            Some(entry) => {
                self.hold(entry, &c.exposed, c.call.with_id(id), env, key, c.approved)
                    .await
            }
            None => Self::refusal(id, "the tool is no longer available"),
        }
    }

    /// A 2026-07-28 task completed with a consent envelope (`reply` is the upstream's
    /// `tasks/get` answer, under our task id): the hold runs beside the task, which reads as
    /// `working` until a human decided; then `tasks/get` answers with the approved call's
    /// result (or the refusal) as the task's result.
    fn hold_beside(
        &self,
        idx: usize,
        ours: &str,
        consent: Option<ConsentCall>,
        env: envelope::Envelope,
        reply: &Message,
    ) -> Message {
        let id = reply.id_str().unwrap_or("null").to_string();
        let Some(mut task) = reply
            .result()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .filter(serde_json::Value::is_object)
        else {
            return withheld(&id);
        };
        if let Some(t) = task.as_object_mut() {
            t.remove("result");
            t.remove("error");
        }
        let Some(this) = self.this.upgrade() else {
            return withheld(&id);
        };
        let (ours_owned, template) = (ours.to_string(), task.clone());
        let hold = crate::task::spawn(tracing::Span::current(), async move {
            // Not a request of the agent's: no in-flight entry carries this key.
            let key = format!("task-hold:{ours_owned}");
            let outcome = this.approve_task_call(idx, consent, env, "0", &key).await;
            let mut task = template;
            if let Some(t) = task.as_object_mut() {
                let (status, field, value) = match (outcome.result(), outcome.error()) {
                    (Some(r), _) => ("completed", "result", r),
                    (None, Some(e)) => ("failed", "error", e),
                    (None, None) => (
                        "failed",
                        "error",
                        r#"{"code":-32603,"message":"Internal error"}"#,
                    ),
                };
                t.insert("status".into(), status.into());
                t.remove("statusMessage");
                t.insert(
                    field.into(),
                    serde_json::from_str(value).unwrap_or_default(),
                );
            }
            if let Some(t) = lock(&this.tasks).by_ours.get_mut(&ours_owned) {
                t.settled = Some(jsonrpc::response("0", task));
            }
        });
        if let Some(t) = lock(&self.tasks).by_ours.get_mut(ours) {
            t.holding = Some((hold, task.clone()));
        }
        tracing::info!(session = %self.id, "a task's result asked for confirmation; held beside the task");
        jsonrpc::response(&id, held_view(task))
    }

    /// What the agent gets for a 2026-07-28 task while a human decides: `tasks/get` reads it
    /// as working; `tasks/cancel` ends the hold (the call is not made) and the task reads as
    /// cancelled; `tasks/update` has nothing to update.
    fn while_held(&self, ours: &str, method: &str, msg: &Message) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let mut tasks = lock(&self.tasks);
        let Some(t) = tasks.by_ours.get_mut(ours) else {
            return jsonrpc::error_response(Some(id), code::INVALID_PARAMS, "Unknown task");
        };
        let Some((_, task)) = &t.holding else {
            return jsonrpc::error_response(Some(id), code::INTERNAL_ERROR, "Internal error");
        };
        let mut task = task.clone();
        match method {
            "tasks/cancel" => {
                // Dropping the hold withdraws the approval request (audited as cancelled).
                t.holding = None;
                if let Some(o) = task.as_object_mut() {
                    o.insert("status".into(), "cancelled".into());
                    o.insert(
                        "statusMessage".into(),
                        "cancelled by the client before a human decided; the call was not made"
                            .into(),
                    );
                }
                t.settled = Some(jsonrpc::response("0", task));
                jsonrpc::response(id, serde_json::json!({}))
            }
            "tasks/get" => jsonrpc::response(id, held_view(task)),
            _ => jsonrpc::response(id, serde_json::json!({})),
        }
    }

    /// Puts our task id back into an upstream's answer to a `tasks/*` request.
    fn task_reply_ids(&self, reply: &Message, method: &str, ours: &str) -> Option<Message> {
        let result = reply.result()?;
        let old = match method {
            "tasks/result" => {
                serde_json::from_str::<WithMeta<'_>>(result)
                    .ok()?
                    .meta?
                    .related?
                    .task_id
            }
            _ => serde_json::from_str::<TaskId<'_>>(result).ok()?.task_id,
        };
        replace(reply, old, ours)
    }

    /// `tasks/list`: this session's tasks only, from every upstream that holds one of them,
    /// in one page.
    pub(super) async fn list_tasks(&self, msg: &Message) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let mut upstreams: Vec<usize> = lock(&self.tasks)
            .by_ours
            .values()
            .map(|t| t.upstream)
            .collect();
        upstreams.sort_unstable();
        upstreams.dedup();
        let mut tasks = vec![];
        for idx in upstreams {
            let Some(conn) = self.live(idx) else { continue };
            let consent = self.slot(idx).is_some_and(|s| s.cfg().consent);
            let mut cursor: Option<String> = None;
            // Bounded like list pages: an upstream could hand out cursors forever.
            for _ in 0..100 {
                let params = match &cursor {
                    Some(c) => serde_json::json!({"cursor": c}),
                    None => serde_json::json!({}),
                };
                let Ok(page) = conn.call("tasks/list", params, LIST_TIMEOUT).await else {
                    break;
                };
                let Some(v) = page
                    .result()
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                else {
                    break;
                };
                for mut t in v["tasks"].as_array().cloned().unwrap_or_default() {
                    let Some(up) = t.get("taskId").map(|i| i.to_string()) else {
                        continue;
                    };
                    let Some(ours) = lock(&self.tasks).ours_for(idx, &up).map(str::to_string)
                    else {
                        continue;
                    };
                    if consent && envelope::contains(&t) {
                        continue;
                    }
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&ours) {
                        t["taskId"] = v;
                    }
                    tasks.push(t);
                }
                match v["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
        }
        jsonrpc::response(id, serde_json::json!({ "tasks": tasks }))
    }

    /// An upstream's `notifications/tasks/status`: under our id if the task is this session's,
    /// otherwise (another session's on a shared upstream, or one the agent never saw) `None`.
    pub(super) fn task_status(&self, idx: usize, msg: &Message) -> Option<Message> {
        let p: TaskId<'_> = serde_json::from_str(msg.params()?).ok()?;
        let ours = lock(&self.tasks)
            .ours_for(idx, p.task_id.get())?
            .to_string();
        let consent = self.slot(idx).is_some_and(|s| s.cfg().consent);
        if consent && carries_envelope(msg) {
            tracing::warn!(session = %self.id, "a task status carried a consent envelope; dropped");
            return None;
        }
        replace(msg, p.task_id, &ours)
    }
}

/// A 2026-07-28 task, as the agent sees it while a human decides about its call.
fn held_view(mut task: serde_json::Value) -> serde_json::Value {
    if let Some(t) = task.as_object_mut() {
        t.insert("status".into(), "working".into());
        t.insert(
            "statusMessage".into(),
            "waiting for a human to approve the call".into(),
        );
    }
    task
}

/// The `result` of a completed 2026-07-28 task (`tasks/get`'s answer), as JSON text.
fn completed_result(reply: &Message) -> Option<String> {
    #[derive(Deserialize)]
    struct Detailed<'a> {
        #[serde(borrow, default)]
        status: Option<&'a str>,
        #[serde(borrow, default)]
        result: Option<&'a RawValue>,
    }
    let d: Detailed<'_> = serde_json::from_str(reply.result()?).ok()?;
    (d.status == Some("completed"))
        .then_some(d.result)
        .flatten()
        .map(|r| r.get().to_string())
}

/// Whether any part of `msg` (result, params or error) holds a consent envelope, at any depth
/// and inside JSON text.
fn carries_envelope(msg: &Message) -> bool {
    [msg.result(), msg.params(), msg.error()]
        .into_iter()
        .flatten()
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .any(|v| envelope::contains(&v))
}
