//! What an agent gets when its call needs an upstream that mcp-warden is not signed in to
//! (OAuth authorization code with no grant yet): the agent is pointed at the page where the
//! sign-in is made — the approvals page, where an operator signs mcp-warden in, or, for a
//! sign-in of the person's own (`per = "user"`), their link — in the form its protocol
//! revision has for it: a 2026-07-28 agent that declared URL-mode elicitation gets an
//! `InputRequiredResult` asking it to open the page, and the call goes on once the sign-in is
//! there; a 2025-11-25 one gets `-32042`, then `notifications/elicitation/complete` when it
//! may call again; any other the tool's error saying who signs in where.
//!
//! Must not: put anything in the URL that grants something by itself (the page asks an
//! operator, or the very person, to sign in), or tell the agent anything but which upstream
//! waits for a sign-in.

use super::*;
use crate::upstream::SignInBy;

/// How long a 2026 agent's retry is held waiting for a sign-in before it is asked again: under
/// the minute clients give a request (the TypeScript SDK's default), and at most half the
/// request timeout, so that a short one still asks twice.
fn sign_in_round(request_timeout: std::time::Duration) -> std::time::Duration {
    (request_timeout / 2).min(std::time::Duration::from_secs(45))
}

/// MCP 2025-11-25: the request needs a URL-mode elicitation completed first.
const URL_ELICITATION_REQUIRED: i64 = -32042;

impl Session {
    /// The HTTP front's origin as this session's agent reaches it (set once, by the front).
    pub fn set_front_origin(&self, origin: String) {
        let _ = self.front_origin.set(origin);
    }

    /// Whether the front still has to tell this session its origin.
    pub fn needs_front_origin(&self) -> bool {
        self.front_origin.get().is_none()
    }

    /// The page where the missing sign-in is made: the approvals page, where an operator
    /// signs in; or, for a sign-in of the caller's own (`per = "user"`), their link, which
    /// only they can use. At `[proxy] public_url`, else as the HTTP front that serves this
    /// session is reached; none over stdio without a public URL.
    fn sign_in_url(&self, name: &str, by: &SignInBy) -> Option<String> {
        let cfg = self.cfg();
        let origin = match &cfg.proxy.public_url {
            Some(u) => u.clone(),
            None => self.front_origin.get()?.clone(),
        };
        match by {
            SignInBy::Operator(_) => Some(format!("{origin}/approvals")),
            SignInBy::Person(Some(person)) => {
                let agent = self.caller.agent().map(|a| a.to_string());
                let handle = self
                    .broker
                    .as_ref()?
                    .links
                    .link(name, agent.as_deref(), person);
                Some(format!("{origin}/oauth/connect/{handle}"))
            }
            SignInBy::Person(None) => None,
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
        let UpstreamError::SignIn { name, by } = &e else {
            return Err(crate::error::Failure::from(&e).answer_to(method, Some(id), &e));
        };
        let url = self.sign_in_url(name, by);
        if let (Some(url), "tools/call") = (&url, method) {
            if self.passes_input_required() {
                if let Some(c) = Box::pin(self.sign_in_by_url(idx, name, by, url, key)).await {
                    return Ok(c);
                }
            } else if self.protocol_version >= "2025-11-25"
                && self.agent_declares(&["elicitation", "url"])
            {
                return Err(self.url_elicitation_required(id, name, by, url));
            }
        }
        let form = if method == "tools/call" {
            "tool_error"
        } else {
            "error"
        };
        crate::metrics::METRICS.sign_in_asked(name, form);
        let failure = match (by, &url) {
            // Their own: only they can make it, at their link.
            (SignInBy::Person(Some(_)), Some(url)) => crate::error::Failure::SignedOut {
                upstream: name.clone(),
                todo: format!("open {url} in a browser and sign in there as yourself"),
            },
            _ => crate::error::Failure::from(&e),
        };
        Err(failure.answer_to(method, Some(id), &e))
    }

    /// A call to mcp-warden's own `sign_in_<upstream>` tool (listed while upstream `idx`
    /// waits for its first sign-in): the sign-in answer, or, once signed in, a result saying
    /// so (the agent hears `list_changed` and finds the upstream's tools).
    pub(super) async fn sign_in_tool(&self, idx: usize, msg: &Message, key: &str) -> Message {
        let id = msg.id_str().unwrap_or("null");
        match self.connection_for(idx, msg, key).await {
            Ok(conn) => jsonrpc::response(
                id,
                serde_json::json!({"content": [{"type": "text", "text": format!(
                    "Signed in to {}: its tools are listed now.",
                    conn.name()
                )}]}),
            ),
            Err(answer) => answer,
        }
    }

    /// What the agent is told the page is for.
    fn sign_in_message(name: &str, by: &SignInBy) -> String {
        match by {
            SignInBy::Person(_) => format!(
                "Upstream {name} needs your own sign-in before this tool can run: on this page you prove who you are, then sign in to {name}; then the call can be made again"
            ),
            SignInBy::Operator(_) => format!(
                "mcp-warden must be signed in to upstream {name} before this tool can run: an operator signs in on the approvals page, then the call can be made again"
            ),
        }
    }

    /// `-32042` with one URL elicitation, remembered so that its completion is announced
    /// when the upstream comes up ([`Session::sign_in_done`]).
    fn url_elicitation_required(&self, id: &str, name: &str, by: &SignInBy, url: &str) -> Message {
        tracing::info!(session = %self.id, upstream = %name, "call answered with a URL elicitation of the sign-in page");
        crate::metrics::METRICS.sign_in_asked(name, "url_elicitation");
        let message = Self::sign_in_message(name, by);
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
                "url": url,
                "message": message,
            }]})),
        )
    }

    /// A 2026-07-28 agent's call: asks the agent to open the page (a URL-mode
    /// `elicitation/create`, which the front returns as an `InputRequiredResult` when the
    /// request declared URL-mode elicitation, and refuses otherwise). Once the agent accepted
    /// and retried, waits for the upstream to come up (the session finds a sign-in by itself:
    /// `SlotState::SignedOut`) and returns its connection. A retry is held at most
    /// [`sign_in_round`] (clients give up on a request after a minute or so): then the agent
    /// is asked again — the specification's answer to an interaction not complete yet — until
    /// the request timeout has passed since the first ask. `None`: not asked, declined, or no
    /// sign-in in time (the caller answers with what to do).
    async fn sign_in_by_url(
        &self,
        idx: usize,
        name: &str,
        by: &SignInBy,
        url: &str,
        key: &str,
    ) -> Option<Arc<Connection>> {
        let sink = lock(&self.inflight).get(key).map(|f| f.sink.clone())?;
        let timeout = self.cfg().proxy.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let round = sign_in_round(timeout);
        loop {
            let params = serde_json::json!({
                "mode": "url",
                "url": url,
                "message": Self::sign_in_message(name, by),
            });
            crate::metrics::METRICS.sign_in_asked(name, "input_required");
            let answer = self
                .ask_agent(idx, &sink, "elicitation/create", params, timeout)
                .await
                .ok()?;
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
            let until = deadline.min(tokio::time::Instant::now() + round);
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
                if tokio::time::timeout_at(until, up).await.is_err() {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tracing::info!(session = %self.id, upstream = %name, "no sign-in yet: the agent is asked again");
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
}
