//! Where an agent's request goes: a tool or prompt by its exposed name, a resource by its URI,
//! a completion by its reference, or every upstream that has a capability; with the policy's
//! argument rewrites (pinned and hidden parameters) applied on the way.
//!
//! Owns: choosing the upstream and editing the request for it. Must not: hold calls for a
//! human (`consent`) or talk to connections directly (`relay::forward`).

use super::*;

/// The edit that makes `params.arguments` of `msg` be `text`: replacing the present member
/// (`params.arguments`, as read), or inserting one as the first member of `params`.
pub(super) fn set_arguments(msg: &Message, params: &Params, text: String) -> Option<Edit> {
    match params.arguments {
        Some(at) => Some(Edit::new(at.range(), text)),
        None => {
            let p = msg.params()?;
            let start = msg.span_of(p).start;
            let open = p.find('{').map(|i| start + i).unwrap_or(start);
            let empty = p.chars().filter(|c| !c.is_whitespace()).eq("{}".chars());
            let member = format!("\"arguments\":{text}{}", if empty { "" } else { "," });
            Some(Edit::new(open + 1..open + 1, member))
        }
    }
}

/// The edit that makes a call's `arguments` what the rewrite says (pinned values set, hidden
/// and never-advertised parameters refused or dropped), or the refusal text for the agent.
/// Only tools with a rewrite pay for this (their arguments are re-serialised).
pub(super) fn arguments_edit(
    msg: &Message,
    params: &Params,
    rw: &crate::config::ToolRewrite,
) -> Result<Option<Edit>, String> {
    if msg.params().is_none() {
        return Ok(None);
    }
    let arguments = Params::text(msg, params.arguments);
    // The common case — no pins, no hidden parameters (the consent-only rewrite every consent
    // upstream gets), an object without a never-advertised key — changes nothing: skip the
    // parse. Any backslash takes the full path, since an escaped key is still that key.
    if rw.pin.is_empty() && rw.hide.is_empty() {
        if let Some(text) = arguments {
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
    let given: Option<serde_json::Value> = match arguments {
        Some(text) => {
            Some(serde_json::from_str(text).map_err(|_| "invalid arguments".to_string())?)
        }
        None => None,
    };
    let out = policy::rewrite::apply_arguments(given.as_ref(), rw).map_err(|e| e.to_string())?;
    if given.as_ref() == Some(&out) {
        return Ok(None);
    }
    set_arguments(msg, params, out.to_string())
        .map(Some)
        .ok_or_else(|| "invalid params".to_string())
}

impl Session {
    /// The only usable upstream, if there is exactly one (then unknown methods go to it).
    pub(super) fn single_upstream(&self) -> Option<usize> {
        let enabled: Vec<usize> = self
            .all_slots()
            .iter()
            .filter(|s| s.usable())
            .map(|s| s.id)
            .collect();
        (enabled.len() == 1).then(|| enabled[0])
    }

    pub(super) async fn route_named(
        &self,
        msg: &Message,
        params: &Params,
        kind: ListKind,
        key: &str,
    ) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let Some(name_raw) = Params::text(msg, params.name) else {
            return jsonrpc::error_response(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: `name` is required",
            );
        };
        let Some(name) = mcp::raw_str_text(name_raw) else {
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
        if entry.own {
            return self.sign_in_tool(entry.upstream, msg, key).await;
        }
        // From here on the call is known by its exposed name (rules and logs use it).
        let name = entry.exposed.clone();
        let mut edits = vec![];
        if entry.original != name {
            let quoted = serde_json::Value::String(entry.original.clone()).to_string();
            edits.push(Edit::new(msg.span_of(name_raw), quoted));
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
            match arguments_edit(msg, params, rw) {
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
            // A call that cannot go out yet (no sign-in) is answered so before a human is
            // asked to approve it.
            if self.signed_out(entry.upstream) {
                if let Err(answer) = self.connection_for(entry.upstream, msg, key).await {
                    return answer;
                }
            }
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
        if kind == ListKind::Tools && tasks::may_have_created(&reply) {
            // The result comes later, through `tasks/result` (or a 2026-07-28 `tasks/get`):
            // the consent gate waits there.
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
            let augmented = tasks::is_task_augmented(&out);
            if let Some(created) = self.task_created(entry.upstream, &reply, augmented, later) {
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

    pub(super) async fn route_uri(&self, msg: &Message, key: &str) -> Message {
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

    pub(super) async fn upstream_for_uri(&self, uri: &str) -> Option<usize> {
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

    pub(super) async fn route_completion(&self, msg: &Message, key: &str) -> Message {
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
    pub(super) async fn broadcast_request(&self, msg: &Message, capability: &str) -> Message {
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
}
