//! The one place where a failure becomes what an agent is told. Leaf code returns a typed cause
//! (an [`UpstreamError`], a transport error, a body that cannot be read); here each kind of
//! failure gets its JSON-RPC code and a fixed public message, and the cause's detail goes to the
//! log, never to the agent: spawn errors name files, an upstream's handshake refusal and
//! transport errors name hosts and internals, and none of it is the agent's business.
//!
//! Owns: the codes and public texts of failures that are not about what the agent sent.
//! Protocol refusals that only repeat the agent's own input ("Unknown tool: x", "Invalid
//! params: …") stay where they are decided. Must not: know about sessions or fronts.

use std::fmt::Display;

use crate::jsonrpc::{self, code, Message};
use crate::upstream::UpstreamError;

/// What went wrong, as far as the agent is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An upstream could not be started or reached, or went away while the call was open.
    Unavailable { upstream: String },
    /// An OAuth-protected upstream nobody has signed mcp-warden in to: `todo` says who signs
    /// in, and how (the command an operator runs, or the page a person opens; it names the
    /// upstream and the agent, nothing secret).
    SignedOut { upstream: String, todo: String },
    /// An upstream did not answer in time (the upstream was told to cancel); `after`: the
    /// request timeout, when that is what ran out.
    Timeout {
        upstream: String,
        after: Option<std::time::Duration>,
    },
    /// An upstream answered with something that cannot be passed on: an HTTP error status, a
    /// body too large, nested too deep, or not JSON-RPC.
    BadAnswer { upstream: String },
    /// An upstream's answer was refused by mcp-warden's own limits before it was read (over the
    /// line limit, nested too deep); `why` is mcp-warden's own wording of which limit.
    Unreadable { why: String },
    /// The session already has as many requests in flight as it may.
    Busy { max: usize },
    /// The agent's request body could not be read (a broken or aborted upload).
    UnreadableBody,
    /// A fault of mcp-warden's own.
    Internal,
}

impl Failure {
    pub fn code(&self) -> i64 {
        match self {
            Failure::Unavailable { .. }
            | Failure::SignedOut { .. }
            | Failure::BadAnswer { .. }
            | Failure::Unreadable { .. } => code::UPSTREAM_UNAVAILABLE,
            Failure::Timeout { .. } => code::REQUEST_TIMEOUT,
            Failure::Busy { .. } => code::BUSY,
            Failure::UnreadableBody => code::PARSE_ERROR,
            Failure::Internal => code::INTERNAL_ERROR,
        }
    }

    /// The fixed text an agent sees: it names the upstream (the agent knows its tools come from
    /// somewhere) and nothing else.
    pub fn message(&self) -> String {
        match self {
            Failure::Unavailable { upstream } => format!("Upstream {upstream} is unavailable"),
            Failure::SignedOut { upstream, todo } => format!(
                "Upstream {upstream} needs a sign-in first: {todo}, then this call can be made again"
            ),
            Failure::Timeout {
                upstream,
                after: Some(t),
            } => format!(
                "Request timed out: upstream {upstream} did not answer within {}s",
                t.as_secs()
            ),
            Failure::Timeout { upstream, .. } => {
                format!("Request timed out: upstream {upstream} did not answer in time")
            }
            Failure::BadAnswer { upstream } => {
                format!("Upstream {upstream} sent an answer that cannot be passed on")
            }
            Failure::Busy { max } => {
                format!("Too many requests in flight for this session (at most {max}); retry when one is answered")
            }
            Failure::Unreadable { why } => format!("The upstream's answer is unreadable: {why}"),
            Failure::UnreadableBody => "Bad Request: the body could not be read".into(),
            Failure::Internal => "Internal error".into(),
        }
    }

    /// The HTTP status when the failure refuses a whole HTTP request rather than being one
    /// JSON-RPC answer among others (those travel in a 200 or an SSE stream).
    pub fn http_status(&self) -> hyper::StatusCode {
        use hyper::StatusCode as S;
        match self {
            Failure::Unavailable { .. }
            | Failure::SignedOut { .. }
            | Failure::BadAnswer { .. }
            | Failure::Unreadable { .. } => S::BAD_GATEWAY,
            Failure::Timeout { .. } => S::GATEWAY_TIMEOUT,
            Failure::Busy { .. } => S::TOO_MANY_REQUESTS,
            Failure::UnreadableBody => S::BAD_REQUEST,
            Failure::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error answer for request `id`; `detail` (the cause) is logged, not sent.
    pub fn answer(&self, id: Option<&str>, detail: &dyn Display) -> Message {
        tracing::warn!(failure = %self.message(), detail = %detail, "request failed");
        jsonrpc::error_response(id, self.code(), &self.message())
    }

    /// The answer to a `method` request `id`: a tool call that cannot run until an operator
    /// signs in gets it as the tool's own error result, which the model reads and can pass
    /// on (the command to run); everything else gets [`Failure::answer`].
    pub fn answer_to(&self, method: &str, id: Option<&str>, detail: &dyn Display) -> Message {
        if let (Failure::SignedOut { .. }, "tools/call") = (self, method) {
            tracing::info!(failure = %self.message(), "call refused: not signed in");
            return jsonrpc::response(
                id.unwrap_or("null"),
                serde_json::json!({
                    "content": [{"type": "text", "text": self.message()}],
                    "isError": true,
                }),
            );
        }
        self.answer(id, detail)
    }
}

impl From<&UpstreamError> for Failure {
    fn from(e: &UpstreamError) -> Failure {
        match e {
            UpstreamError::Timeout(upstream) => Failure::Timeout {
                upstream: upstream.clone(),
                after: None,
            },
            UpstreamError::Unavailable(upstream)
            | UpstreamError::Closed(upstream)
            | UpstreamError::Start { name: upstream, .. }
            | UpstreamError::Handshake { name: upstream, .. } => Failure::Unavailable {
                upstream: upstream.clone(),
            },
            UpstreamError::SignIn { name, by } => Failure::SignedOut {
                upstream: name.clone(),
                todo: match by {
                    crate::upstream::SignInBy::Operator(cmd) => {
                        format!("an operator runs `{cmd}`")
                    }
                    crate::upstream::SignInBy::Person(Some(_)) => {
                        "you sign in for yourself on mcp-warden's sign-in page".into()
                    }
                    crate::upstream::SignInBy::Person(None) => {
                        "each person signs in for themselves, so connect to mcp-warden signed in with the identity provider".into()
                    }
                },
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_never_in_the_answer() {
        let causes = [
            UpstreamError::Start {
                name: "files".into(),
                reason: "No such file or directory (os error 2): /opt/secret/server".into(),
            },
            UpstreamError::Handshake {
                name: "files".into(),
                reason: "internal: db password rejected for user admin".into(),
            },
            UpstreamError::Closed("files".into()),
            UpstreamError::Timeout("files".into()),
        ];
        for e in &causes {
            let m = Failure::from(e).answer(Some("1"), e);
            let text = String::from_utf8(m.into_bytes().to_vec()).unwrap();
            assert!(text.to_lowercase().contains("upstream files "), "{text}");
            for secret in ["os error", "/opt/secret", "password", "admin"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        assert_eq!(
            Failure::from(&UpstreamError::Timeout("u".into())).code(),
            code::REQUEST_TIMEOUT
        );
        assert_eq!(Failure::Busy { max: 3 }.code(), code::BUSY);
        assert_ne!(code::BUSY, code::REQUEST_TIMEOUT);
    }
}
