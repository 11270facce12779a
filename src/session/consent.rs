//! Calls that wait for a human: operator rules that hold a call before it is forwarded, consent
//! envelopes that hold it after, grants that let it through, and the synthetic refusal when
//! the answer is no. The `action_id` of an envelope never leaves this module's values.
//!
//! Owns: holding, progress while held, the confirmed retry. Must not: decide the rules (that
//! is `crate::policy::approval`) or store decisions (that is `crate::approval`).

use super::*;

/// The call with `confirmation_token` set in its arguments (the only place mcp-warden writes an
/// `action_id`: towards the upstream that issued it).
pub(super) fn with_confirmation_token(call: &Message, action_id: &str) -> Result<Message, ()> {
    let params = Params::of(call);
    if params.twice.is_some() {
        return Err(());
    }
    let mut args: serde_json::Map<String, serde_json::Value> =
        match Params::text(call, params.arguments) {
            Some(text) => serde_json::from_str(text).map_err(|_| ())?,
            None => serde_json::Map::new(),
        };
    args.insert(
        "confirmation_token".into(),
        serde_json::Value::String(action_id.to_string()),
    );
    let text = serde_json::Value::Object(args).to_string();
    call.edited(vec![set_arguments(call, &params, text).ok_or(())?])
        .map_err(|_| ())
}

impl Session {
    /// Every refused call goes into the audit log (who, what, why).
    pub(super) fn audit_refusal(&self, name: &str, label: &'static str, reason: &str) {
        crate::metrics::METRICS.refused(self.caller_name(), label);
        if let Some(b) = &self.broker {
            b.audit(serde_json::json!({"kind": "call.refused", "agent": self.agent_name(), "name": name, "reason": reason}));
        }
    }

    /// Whether an operator rule (`[[approvals.require]]`) holds this call before forwarding.
    pub(super) fn policy_requires_approval(&self, entry: &catalog::Entry, exposed: &str) -> bool {
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
    pub(super) fn refusal(id: &str, reason: &str) -> Message {
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
    pub(super) async fn await_approval(
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
    pub(super) async fn hold(
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
    pub(super) fn progress_ticker(
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
}
