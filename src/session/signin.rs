//! What an agent gets when its call needs an upstream that mcp-warden is not signed in to
//! (OAuth authorization code with no grant yet): the agent is pointed at the approvals page,
//! where an operator signs mcp-warden in, in the form its protocol revision has for it —
//! a 2026-07-28 agent that declared URL-mode elicitation gets an `InputRequiredResult` asking
//! it to open the page and the call goes on once the sign-in is there; a 2025-11-25 one gets
//! `-32042` and `notifications/elicitation/complete` when it may call again; any other the
//! tool's error naming the command an operator runs.
//!
//! Must not: put anything in the URL that grants something by itself (the page asks the
//! operator to sign in), or tell the agent anything but which upstream waits for a sign-in.

use super::*;

/// MCP 2025-11-25: the request needs a URL-mode elicitation completed first.
const URL_ELICITATION_REQUIRED: i64 = -32042;

impl Session {
    /// Where an operator signs mcp-warden in to upstreams, for this session's agent to be
    /// pointed at (set once, by the HTTP front: the approvals page as that agent reaches it).
    pub fn set_sign_in_page(&self, url: String) {
        let _ = self.sign_in_page.set(url);
    }

    /// Whether the front still has to tell this session where the page is.
    pub fn needs_sign_in_page(&self) -> bool {
        self.sign_in_page.get().is_none()
    }

    /// The approvals page: `[proxy] public_url`'s, else as the HTTP front that serves this
    /// session is reached; none over stdio without a public URL.
    fn sign_in_page(&self) -> Option<String> {
        match &self.cfg().proxy.public_url {
            Some(u) => Some(format!("{u}/approvals")),
            None => self.sign_in_page.get().cloned(),
        }
    }

    /// Upstream `idx`'s connection for the agent's request `msg`, or the answer the agent
    /// gets instead. A tool call that waits for a sign-in is answered in the agent's terms
    /// (see the module); a 2026-07-28 agent's call continues here once the sign-in is made.
    pub(super) async fn connection_for(
        &self,
        idx: usize,
        msg: &Message,
        key: &str,
    ) -> Result<Arc<Connection>, Message> {
        let e = match self.connection(idx).await {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        let method = msg.method().unwrap_or_default();
        let id = msg.id_str().unwrap_or("null");
        if let (UpstreamError::SignIn { name, .. }, "tools/call", Some(page)) =
            (&e, method, self.sign_in_page())
        {
            if self.passes_input_required() {
                if let Some(c) = Box::pin(self.sign_in_by_url(idx, name, &page, key)).await {
                    return Ok(c);
                }
            } else if self.protocol_version >= "2025-11-25" && self.agent_accepts_url_elicitation()
            {
                return Err(self.url_elicitation_required(id, name, &page));
            }
        }
        Err(crate::error::Failure::from(&e).answer_to(method, Some(id), &e))
    }

    /// What the agent is told the page is for.
    fn sign_in_message(name: &str) -> String {
        format!(
            "mcp-warden must be signed in to upstream {name} before this tool can run: an operator signs in on the approvals page, then the call can be made again"
        )
    }

    /// `-32042` with one URL elicitation, remembered so that its completion is announced
    /// when the upstream comes up ([`Session::sign_in_done`]).
    fn url_elicitation_required(&self, id: &str, name: &str, page: &str) -> Message {
        tracing::info!(session = %self.id, upstream = %name, "call answered with a URL elicitation: an operator signs in on the approvals page");
        let message = Self::sign_in_message(name);
        let elicitation = format!("mw-sign-in-{}", crate::approval::random_id(12));
        {
            // Bounded: an agent that keeps calling is told of the last few only.
            let mut asked = lock(&self.sign_in_asked);
            if asked.len() >= 32 {
                asked.remove(0);
            }
            asked.push((name.to_string(), elicitation.clone()));
        }
        jsonrpc::error_with_data(
            Some(id),
            URL_ELICITATION_REQUIRED,
            &message,
            Some(serde_json::json!({"elicitations": [{
                "mode": "url",
                "elicitationId": elicitation,
                "url": page,
                "message": message,
            }]})),
        )
    }

    /// A 2026-07-28 agent's call: asks the agent to open the page (a URL-mode
    /// `elicitation/create`, which the front returns as an `InputRequiredResult` when the
    /// request declared URL-mode elicitation, and refuses otherwise). Once the agent accepted
    /// and retried, waits — up to the request timeout — for the upstream to come up (the
    /// session finds a sign-in by itself: `SlotState::SignedOut`) and returns its connection.
    /// `None`: not asked, declined, or no sign-in in time (the caller answers with the
    /// command).
    async fn sign_in_by_url(
        &self,
        idx: usize,
        name: &str,
        page: &str,
        key: &str,
    ) -> Option<Arc<Connection>> {
        let sink = lock(&self.inflight).get(key).map(|f| f.sink.clone())?;
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
        let ask = jsonrpc::request(
            &our_id.to_string(),
            "elicitation/create",
            serde_json::json!({
                "mode": "url",
                "url": page,
                "message": Self::sign_in_message(name),
            }),
        );
        let timeout = self.cfg().proxy.request_timeout;
        let answer = match sink.send(ask).await {
            Ok(()) => tokio::time::timeout(timeout, rx).await.ok()?.ok(),
            Err(_) => None,
        };
        let Some(answer) = answer else {
            lock(&self.server_requests).remove(&our_id);
            return None;
        };
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            action: Option<&'a str>,
        }
        let action = answer
            .result()
            .and_then(|r| serde_json::from_str::<Answer<'_>>(r).ok())
            .and_then(|a| a.action);
        if action != Some("accept") {
            tracing::info!(session = %self.id, upstream = %name, action = action.unwrap_or("none"), "the agent did not take the sign-in page");
            return None;
        }
        tracing::info!(session = %self.id, upstream = %name, "the agent opened the sign-in page; the call waits for the sign-in");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so that a sign-in found in between is not missed.
            let up = self.upstream_up.notified();
            tokio::pin!(up);
            up.as_mut().enable();
            match self.connection(idx).await {
                Ok(c) => return Some(c),
                Err(UpstreamError::SignIn { .. }) => {}
                Err(_) => return None,
            }
            tokio::time::timeout_at(deadline, up).await.ok()?;
        }
    }

    /// Upstream `name` came up: a call waiting for its sign-in goes on, and the URL
    /// elicitations asked for it are complete (`notifications/elicitation/complete`, to this
    /// session's agent only, which may then retry the call).
    pub(super) fn sign_in_done(&self, name: &str) {
        self.upstream_up.notify_waiters();
        let done: Vec<String> = {
            let mut asked = lock(&self.sign_in_asked);
            let (done, rest) = std::mem::take(&mut *asked)
                .into_iter()
                .partition(|(up, _)| up == name);
            *asked = rest;
            done.into_iter().map(|(_, id)| id).collect()
        };
        for id in done {
            self.send_general(jsonrpc::notification(
                "notifications/elicitation/complete",
                Some(serde_json::json!({ "elicitationId": id })),
            ));
        }
    }

    /// Whether the agent's `initialize` declared URL-mode elicitation.
    fn agent_accepts_url_elicitation(&self) -> bool {
        serde_json::from_str::<serde_json::Value>(self.handshake.capabilities.get())
            .ok()
            .and_then(|c| c.get("elicitation")?.get("url").cloned())
            .is_some()
    }
}
