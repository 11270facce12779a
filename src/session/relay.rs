//! Messages between the agent and the upstreams once routed: a request forwarded under an id of
//! the connection's own and answered under the agent's, cancellations both ways, server→client
//! requests and their answers, notifications to the stream they belong to.
//!
//! Owns: id remapping and which sink a message goes to. Must not: choose the upstream (`route`).

use super::*;

impl Session {
    /// Forwards an agent request to upstream `idx` and returns the answer under the agent's id.
    pub(super) async fn forward(&self, idx: usize, msg: Message, key: &str) -> Message {
        let id = msg.id_str().unwrap_or("null").to_string();
        let conn = match self.connection_for(idx, &msg, key).await {
            Ok(c) => c,
            Err(answer) => return answer,
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
            Ok(Ok(reply)) if mrtr::asks_input(&reply) && !self.passes_input_required() => {
                // A 2026-07-28 upstream needs input a 2025 agent gives as answers to
                // server→client requests: asked, then the call is sent again with them.
                let reply = Box::pin(self.bridge_input(idx, &conn, &msg, reply, key)).await;
                record(crate::metrics::outcome(&reply));
                reply.with_id(&id)
            }
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

    pub(super) fn on_agent_notification(&self, msg: Message) {
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

    pub(super) fn agent_cancelled(&self, msg: &Message) {
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

    pub(super) fn on_agent_response(&self, msg: Message) {
        let Some(our_id) = msg.id_str().and_then(|s| s.parse::<u64>().ok()) else {
            tracing::debug!("agent answered an unknown request id");
            return;
        };
        let Some(req) = lock(&self.server_requests).remove(&our_id) else {
            tracing::debug!(id = our_id, "agent answered an unknown or finished request");
            return;
        };
        if let Some(waiter) = req.waiter {
            let _ = waiter.send(msg);
            return;
        }
        if let Some(conn) = self.live(req.upstream) {
            conn.send_later(msg.with_id(&req.upstream_id));
        }
    }

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
    pub(super) fn sink_for(&self, idx: usize, related: Option<u64>) -> Sink {
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

    pub(super) fn upstream_request(&self, idx: usize, inbound: Inbound) {
        let our_id = self.seq.fetch_add(1, Ordering::Relaxed);
        let upstream_id = inbound.msg.id_str().unwrap_or("null").to_string();
        lock(&self.server_requests).insert(
            our_id,
            ServerRequest {
                upstream: idx,
                upstream_id,
                waiter: None,
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

    pub(super) fn upstream_notification(&self, idx: usize, inbound: Inbound) {
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
