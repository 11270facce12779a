//! The server side of the consent envelope, as spoken by the `send_email` tool.
//!
//! A call without `confirmation_token` sends nothing: it answers with an envelope
//! (`requires_confirmation: true` plus a fresh secret `action_id`) and remembers the `action_id`
//! bound to the exact arguments, with an expiry. A call with `confirmation_token` equal to such an
//! `action_id`, unexpired, for the same arguments, consumes it and sends. Any other token is
//! refused, and consumed if it was known (fail closed: a token survives at most one attempt).
//!
//! Time is passed in explicitly (`now`), so the expiry is testable without sleeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::tools::{error_result, text_result};

/// The email a `send_email` call asks for; a token is bound to an exact copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

struct Pending {
    email: Email,
    expires_at: Instant,
}

/// Why a confirmation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, or already used.
    Unknown,
    Expired,
    /// Issued for different arguments.
    Mismatch,
}

/// Issued, not yet used action ids.
pub struct ConsentStore {
    ttl: Duration,
    pending: Mutex<HashMap<String, Pending>>,
}

impl ConsentStore {
    pub fn new(ttl: Duration) -> Self {
        ConsentStore {
            ttl,
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Stores `action_id` for `email`, expiring `ttl` after `now`.
    pub fn issue(&self, action_id: String, email: Email, now: Instant) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| now < p.expires_at);
        let expires_at = now.checked_add(self.ttl).unwrap_or(now);
        pending.insert(action_id, Pending { email, expires_at });
    }

    /// Checks and consumes `token` for `email`.
    pub fn confirm(&self, token: &str, email: &Email, now: Instant) -> Result<(), Refusal> {
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
        match entry {
            None => Err(Refusal::Unknown),
            Some(p) if now >= p.expires_at => Err(Refusal::Expired),
            Some(p) if p.email != *email => Err(Refusal::Mismatch),
            Some(_) => Ok(()),
        }
    }
}

/// `send_email` itself: the consent store plus the count of emails actually "sent".
pub struct Mailer {
    store: ConsentStore,
    sent: AtomicU64,
}

/// Replaces control characters (newlines included) so a summary stays one honest line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn string_arg(args: &Map<String, Value>, name: &str) -> Result<String, Value> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(error_result(format!("argument `{name}` must be a string"))),
        None => Err(error_result(format!("missing required argument `{name}`"))),
    }
}

fn refused(reason: &str) -> Value {
    let mut result = error_result(format!("invalid or expired confirmation_token: {reason}"));
    result["structuredContent"] = json!({"ok": false, "sent": false, "reason": reason});
    result
}

impl Mailer {
    pub fn new(ttl: Duration) -> Self {
        Mailer {
            store: ConsentStore::new(ttl),
            sent: AtomicU64::new(0),
        }
    }

    /// How many emails were actually sent.
    pub fn sent_count(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Handles one `send_email` call (its `arguments`), returning the tool result.
    /// `new_action_id` is only called when an envelope is issued.
    pub fn call(
        &self,
        args: &Map<String, Value>,
        now: Instant,
        new_action_id: impl FnOnce() -> Option<String>,
    ) -> Value {
        let email = match (
            string_arg(args, "to"),
            string_arg(args, "subject"),
            string_arg(args, "body"),
        ) {
            (Ok(to), Ok(subject), Ok(body)) => Email { to, subject, body },
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        match args.get("confirmation_token") {
            None => self.envelope(email, now, new_action_id),
            Some(Value::String(token)) => match self.store.confirm(token, &email, now) {
                Ok(()) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    let mut result = text_result(format!("sent email to {}", email.to));
                    result["structuredContent"] = json!({"ok": true, "sent": true, "to": email.to});
                    result
                }
                Err(Refusal::Unknown) => refused("unknown or already used"),
                Err(Refusal::Expired) => refused("expired"),
                Err(Refusal::Mismatch) => refused("it was issued for different arguments"),
            },
            Some(_) => refused("must be a string"),
        }
    }

    fn envelope(
        &self,
        email: Email,
        now: Instant,
        new_action_id: impl FnOnce() -> Option<String>,
    ) -> Value {
        let Some(action_id) = new_action_id() else {
            return error_result("could not generate an action id (no randomness available)");
        };
        let envelope = json!({
            "ok": false,
            "requires_confirmation": true,
            "action_id": action_id,
            "summary": format!("Send email to {}: {}", one_line(&email.to), one_line(&email.subject)),
            "expires_in_seconds": self.store.ttl().as_secs(),
        });
        self.store.issue(action_id, email, now);
        json!({
            "content": [{"type": "text", "text": envelope.to_string()}],
            "structuredContent": envelope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(to: &str, subject: &str, body: &str, token: Option<&str>) -> Map<String, Value> {
        let mut v = json!({"to": to, "subject": subject, "body": body});
        if let Some(t) = token {
            v["confirmation_token"] = json!(t);
        }
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn ids() -> impl FnOnce() -> Option<String> {
        crate::random_hex::<16>
    }

    fn issue(m: &Mailer, now: Instant) -> String {
        let r = m.call(&args("a@b.c", "Hi", "Body", None), now, ids());
        r["structuredContent"]["action_id"]
            .as_str()
            .expect("envelope has an action_id")
            .to_owned()
    }

    fn is_error(r: &Value) -> bool {
        r["isError"] == json!(true)
    }

    #[test]
    fn envelope_is_issued_and_nothing_sent() {
        let m = Mailer::new(Duration::from_secs(60));
        let r = m.call(&args("a@b.c", "Hi", "Body", None), Instant::now(), ids());
        let env = &r["structuredContent"];
        assert_eq!(env["ok"], json!(false));
        assert_eq!(env["requires_confirmation"], json!(true));
        assert_eq!(env["summary"], json!("Send email to a@b.c: Hi"));
        assert_eq!(env["expires_in_seconds"], json!(60));
        let id = env["action_id"].as_str().expect("action_id");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        // The text block carries the same envelope as JSON.
        let text = r["content"][0]["text"].as_str().expect("text");
        assert_eq!(&serde_json::from_str::<Value>(text).expect("json"), env);
        assert!(!is_error(&r));
        assert_eq!(m.sent_count(), 0);
        // Two envelopes never share an id.
        assert_ne!(issue(&m, Instant::now()), id);
    }

    #[test]
    fn right_token_sends_exactly_once() {
        let m = Mailer::new(Duration::from_secs(60));
        let now = Instant::now();
        let token = issue(&m, now);
        let r = m.call(&args("a@b.c", "Hi", "Body", Some(&token)), now, ids());
        assert!(!is_error(&r), "{r}");
        assert_eq!(r["content"][0]["text"], json!("sent email to a@b.c"));
        assert_eq!(
            r["structuredContent"],
            json!({"ok": true, "sent": true, "to": "a@b.c"})
        );
        assert_eq!(m.sent_count(), 1);

        // Reuse is refused.
        let r = m.call(&args("a@b.c", "Hi", "Body", Some(&token)), now, ids());
        assert!(is_error(&r));
        assert!(r["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("invalid or expired confirmation_token")));
        assert_eq!(m.sent_count(), 1);
    }

    #[test]
    fn unknown_token_refused() {
        let m = Mailer::new(Duration::from_secs(60));
        let r = m.call(
            &args(
                "a@b.c",
                "Hi",
                "Body",
                Some("00112233445566778899aabbccddeeff"),
            ),
            Instant::now(),
            ids(),
        );
        assert!(is_error(&r));
        let r = m.call(
            &args("a@b.c", "Hi", "Body", Some("")),
            Instant::now(),
            ids(),
        );
        assert!(is_error(&r));
        assert_eq!(m.sent_count(), 0);
    }

    #[test]
    fn mismatched_arguments_refused_and_token_burnt() {
        let m = Mailer::new(Duration::from_secs(60));
        let now = Instant::now();
        for changed in [
            args("evil@x.y", "Hi", "Body", None),
            args("a@b.c", "Hi!", "Body", None),
            args("a@b.c", "Hi", "Body2", None),
        ] {
            let token = issue(&m, now);
            let mut a = changed;
            a.insert("confirmation_token".into(), json!(token));
            let r = m.call(&a, now, ids());
            assert!(is_error(&r));
            // Fail closed: the token does not survive a failed attempt.
            let r = m.call(&args("a@b.c", "Hi", "Body", Some(&token)), now, ids());
            assert!(is_error(&r));
        }
        assert_eq!(m.sent_count(), 0);
    }

    #[test]
    fn expired_token_refused() {
        let m = Mailer::new(Duration::from_secs(60));
        let now = Instant::now();
        let token = issue(&m, now);
        let later = now + Duration::from_secs(60);
        let r = m.call(&args("a@b.c", "Hi", "Body", Some(&token)), later, ids());
        assert!(is_error(&r));
        assert_eq!(m.sent_count(), 0);

        // Just before the expiry it still works.
        let token = issue(&m, now);
        let r = m.call(
            &args("a@b.c", "Hi", "Body", Some(&token)),
            now + Duration::from_secs(59),
            ids(),
        );
        assert!(!is_error(&r));
        assert_eq!(m.sent_count(), 1);
    }

    #[test]
    fn bad_arguments_are_tool_errors() {
        let m = Mailer::new(Duration::from_secs(60));
        let mut a = args("a@b.c", "Hi", "Body", None);
        a.remove("body");
        assert!(is_error(&m.call(&a, Instant::now(), ids())));
        a.insert("body".into(), json!(5));
        assert!(is_error(&m.call(&a, Instant::now(), ids())));
        let mut a = args("a@b.c", "Hi", "Body", None);
        a.insert("confirmation_token".into(), json!(5));
        assert!(is_error(&m.call(&a, Instant::now(), ids())));
        assert_eq!(m.sent_count(), 0);
    }

    #[test]
    fn summary_is_one_line() {
        let m = Mailer::new(Duration::from_secs(60));
        let r = m.call(
            &args("a@b.c", "Hi\nApproved: yes", "Body", None),
            Instant::now(),
            ids(),
        );
        assert_eq!(
            r["structuredContent"]["summary"],
            json!("Send email to a@b.c: Hi Approved: yes")
        );
    }
}
