//! Tasks (MCP 2025-11-25: `tools/call` with `params.task`, then `tasks/get`, `tasks/result`,
//! `tasks/list`, `tasks/cancel` and `notifications/tasks/status`).
//!
//! Owns: the agent's view of tasks. Every task id the agent sees is mcp-warden's own (random,
//! unguessable), bound to the upstream that created the task and to this session; `tasks/*`
//! reach only tasks this session created (another session's or another upstream's id is
//! "unknown"), and an upstream's status notification for a task that is not this session's is
//! dropped. A tool result reaching the agent through a task goes through the same consent gate
//! as a direct call: an envelope in `tasks/result` is held for a human and answered with the
//! approved call's result (or a refusal); an envelope anywhere else in a task message from a
//! consent upstream is withheld. The `action_id` never reaches the agent by any of these routes.
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
    consent: Option<ConsentCall>,
    /// The answer to `tasks/result` once a consent flow settled it (asked again, it is the
    /// same; the server's `action_id` is single use).
    settled: Option<Message>,
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

#[derive(Deserialize)]
struct Created<'a> {
    #[serde(borrow)]
    task: TaskId<'a>,
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

/// Whether a `tools/call` asks for a task (`params.task` present).
pub(super) fn is_task_augmented(msg: &Message) -> bool {
    msg.params()
        .and_then(|p| serde_json::from_str::<TaskParam<'_>>(p).ok())
        .is_some_and(|p| p.task.is_some())
}

/// `call` without `params.task`: the plain call made again after a human approved.
pub(super) fn without_task(call: &Message) -> Option<Message> {
    let mut params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(call.params()?).ok()?;
    params.remove("task");
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
    /// The upstream answered a task-augmented `tools/call` with a `CreateTaskResult`: the task
    /// is remembered under an id of ours, which the agent gets instead. `None`: the answer is
    /// not a created task (an upstream without tasks answers the call directly).
    pub(super) fn task_created(
        &self,
        upstream: usize,
        reply: &Message,
        consent: Option<ConsentCall>,
    ) -> Option<Message> {
        let created: Created<'_> = serde_json::from_str(reply.result()?).ok()?;
        let upstream_id = created.task.task_id.get();
        if !upstream_id.starts_with('"') {
            return None;
        }
        let ours = new_task_id()?;
        let out = replace(reply, created.task.task_id, &ours)?;
        lock(&self.tasks).insert(
            ours,
            TaskRef {
                upstream,
                upstream_id: upstream_id.to_string(),
                consent,
                settled: None,
            },
        );
        Some(out)
    }

    /// `tasks/get`, `tasks/result`, `tasks/cancel`: only for this session's tasks, forwarded to
    /// the upstream that owns the task under its own id, answered under ours.
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
                t.consent.clone(),
                t.settled.clone(),
            )
        });
        let Some((idx, upstream_id, consent, settled)) = found else {
            return jsonrpc::error_response(Some(id), code::INVALID_PARAMS, "Unknown task");
        };
        if let (Some(done), "tasks/result") = (settled, method) {
            return done.with_id(id);
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
        if method == "tasks/result" {
            if let Some(env) = reply.result().and_then(envelope::detect) {
                return Box::pin(self.settle(idx, &ours, consent, env, msg, key)).await;
            }
        }
        if carries_envelope(&reply) {
            tracing::warn!(session = %self.id, %method, "a task message carried a consent envelope outside tasks/result; withheld");
            return withheld(id);
        }
        reply
    }

    /// A task's result is a consent envelope: held for a human like a direct call's, and the
    /// outcome kept as the task's result.
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
        let Some(c) = consent else {
            return Self::refusal(id, "the task's call is unknown");
        };
        let list = self.list(ListKind::Tools).await;
        let outcome = match list.get(&c.exposed).filter(|e| e.upstream == idx) {
            Some(entry) => {
                self.hold(entry, &c.exposed, c.call.with_id(id), env, key, c.approved)
                    .await
            }
            None => Self::refusal(id, "the tool is no longer available"),
        };
        if let Some(t) = lock(&self.tasks).by_ours.get_mut(ours) {
            t.settled = Some(outcome.clone());
        }
        outcome
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

/// Whether any part of `msg` (result, params or error) holds a consent envelope, at any depth
/// and inside JSON text.
fn carries_envelope(msg: &Message) -> bool {
    [msg.result(), msg.params(), msg.error()]
        .into_iter()
        .flatten()
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .any(|v| envelope::contains(&v))
}
