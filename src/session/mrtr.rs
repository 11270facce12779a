//! A 2026-07-28 upstream's multi round-trip result (`resultType: "input_required"`) for a 2025
//! agent, which knows only server→client requests: each input request is asked of the agent
//! (sampling, elicitation, roots — what its `initialize` declared), and the call is sent again
//! with the answers (`inputResponses`) and the upstream's `requestState`, until the upstream
//! answers for good. (A 2026 agent gets the result as it is: `passes_input_required`.)
//!
//! Must not: interpret `requestState` (it is the upstream's, passed back untouched).

use super::*;

/// Rounds of input one call may ask for before mcp-warden gives up on it.
const MAX_ROUNDS: usize = 8;

/// Whether an answer is a multi round-trip result (a cheap look first).
pub(super) fn asks_input(reply: &Message) -> bool {
    #[derive(serde::Deserialize)]
    struct R<'a> {
        #[serde(rename = "resultType", borrow, default)]
        result_type: Option<&'a str>,
    }
    reply.result().is_some_and(|r| {
        r.contains("input_required")
            && serde_json::from_str::<R<'_>>(r)
                .is_ok_and(|r| r.result_type == Some("input_required"))
    })
}

#[derive(serde::Deserialize)]
struct InputRequired {
    #[serde(rename = "inputRequests", default)]
    input_requests: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "requestState", default)]
    request_state: Option<String>,
}

/// Why a request mcp-warden put to the agent got no answer.
pub(super) enum NoAnswer {
    /// The agent's request is gone (its sink closed).
    NotSent,
    /// No answer in time.
    TimedOut,
}

impl Session {
    /// Puts `method` to the agent, on the sink of the agent's request that needs it, as a
    /// request of mcp-warden's own (for upstream `idx`), and waits up to `timeout` for the
    /// answer (which [`Session::handle`] routes here, not upstream).
    pub(super) async fn ask_agent(
        &self,
        idx: usize,
        sink: &Sink,
        method: &str,
        params: serde_json::Value,
        timeout: std::time::Duration,
    ) -> Result<Message, NoAnswer> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let our_id = self.seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.server_requests).insert(
            our_id,
            ServerRequest {
                upstream: idx,
                upstream_id: String::new(),
                waiter: Some(tx),
            },
        );
        let ask = jsonrpc::request(&our_id.to_string(), method, params);
        let answer = if sink.send(ask).await.is_err() {
            Err(NoAnswer::NotSent)
        } else {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => Ok(answer),
                _ => Err(NoAnswer::TimedOut),
            }
        };
        if answer.is_err() {
            lock(&self.server_requests).remove(&our_id);
        }
        answer
    }

    pub(super) fn passes_input_required(&self) -> bool {
        self.passes_input_required.load(Ordering::Relaxed)
    }

    /// Whether the agent's `initialize` declared what an input request needs.
    fn agent_can(&self, method: &str) -> bool {
        let cap = match method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            "roots/list" => "roots",
            _ => return false,
        };
        self.agent_declares(&[cap])
    }

    /// Whether the agent's `initialize` declared capability `path` ([`mcp::declares`]).
    pub(super) fn agent_declares(&self, path: &[&str]) -> bool {
        mcp::declares(self.handshake.capabilities.get(), path)
    }

    /// Asks the agent what `reply` needs and sends the call again with its answers, round
    /// after round; returns the upstream's final answer (under the upstream's id).
    pub(super) async fn bridge_input(
        &self,
        idx: usize,
        conn: &Connection,
        msg: &Message,
        mut reply: Message,
        key: &str,
    ) -> Message {
        let timeout = self.cfg().proxy.request_timeout;
        for _ in 0..MAX_ROUNDS {
            let Some(ir) = reply
                .result()
                .and_then(|r| serde_json::from_str::<InputRequired>(r).ok())
            else {
                break;
            };
            let Some(sink) = lock(&self.inflight).get(key).map(|f| f.sink.clone()) else {
                break; // the agent's request is gone
            };
            let mut responses = serde_json::Map::new();
            for (name, request) in &ir.input_requests {
                let method = request
                    .get("method")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default();
                if !self.agent_can(method) {
                    return jsonrpc::error_response(
                        msg.id_str(),
                        code::INVALID_REQUEST,
                        &format!("The server needs input this client cannot give ({method})"),
                    );
                }
                let params = request
                    .get("params")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({}));
                match self.ask_agent(idx, &sink, method, params, timeout).await {
                    Ok(answer) => {
                        if let Some(r) = answer.result() {
                            if let Ok(v) = serde_json::from_str::<serde_json::Value>(r) {
                                responses.insert(name.clone(), v);
                            }
                        }
                        // An error answer: left out; the upstream asks again or fails.
                    }
                    Err(NoAnswer::NotSent) => break,
                    Err(NoAnswer::TimedOut) => {
                        return jsonrpc::error_response(
                            msg.id_str(),
                            code::INTERNAL_ERROR,
                            "The client did not answer the server's request",
                        );
                    }
                }
            }
            // The same call, with the answers and the upstream's state.
            let mut members = format!(
                r#""inputResponses":{}"#,
                serde_json::Value::Object(responses)
            );
            if let Some(state) = &ir.request_state {
                members.push_str(&format!(
                    r#","requestState":{}"#,
                    serde_json::Value::String(state.clone())
                ));
            }
            let Some(params) = msg.params().filter(|p| p.starts_with('{')) else {
                break;
            };
            let at = msg.span_of(params).start + 1;
            let empty = params
                .get(1..)
                .unwrap_or_default()
                .trim_start()
                .starts_with('}');
            let retry = msg.with_insert(at, &format!("{members}{}", if empty { "" } else { "," }));
            let (up_id, out) = conn.prepare(&retry);
            if let Some(f) = lock(&self.inflight).get_mut(key) {
                f.upstream = Some((idx, up_id));
            }
            reply = match tokio::time::timeout(timeout, conn.request(up_id, out)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return crate::error::Failure::from(&e).answer(msg.id_str(), &e),
                Err(_) => {
                    Box::pin(conn.cancel(up_id, "mcp-warden: request timed out")).await;
                    return crate::error::Failure::Timeout {
                        upstream: conn.name().to_string(),
                        after: Some(timeout),
                    }
                    .answer(msg.id_str(), &"the request timeout ran out");
                }
            };
            if !asks_input(&reply) {
                return reply;
            }
        }
        jsonrpc::error_response(
            msg.id_str(),
            code::INTERNAL_ERROR,
            "The server kept asking for input; the call was abandoned",
        )
    }
}
