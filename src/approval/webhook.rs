//! Signed webhooks: when an approval opens and when it closes, a JSON event is POSTed to every
//! configured URL, so that a chat bot can relay it to humans (who then decide through the
//! control API). Each request carries
//!
//! - `X-Warden-Event`: `approval.requested`, `approval.decided`, `approval.expired`, `approval.cancelled`
//! - `X-Warden-Event-Id`: unique per event (receivers drop repeats)
//! - `X-Warden-Timestamp`: Unix seconds (receivers refuse stale ones: replay protection)
//! - `X-Warden-Signature`: `sha256=` + hex HMAC-SHA256(secret, timestamp + "." + body)
//!
//! The event never contains an `action_id`.

use std::time::Duration;

use hmac::Mac;

use super::ApprovalInfo;
use crate::config::Webhook;

/// hex HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct Webhooks {
    hooks: Vec<Webhook>,
    client: reqwest::Client,
}

impl Webhooks {
    pub fn new(hooks: Vec<Webhook>) -> Webhooks {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Webhooks { hooks, client }
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Delivers one event to every hook (a few attempts each). True if at least one accepted
    /// it (or there are no hooks).
    pub async fn deliver(&self, kind: &str, info: &ApprovalInfo) -> bool {
        if self.hooks.is_empty() {
            return true;
        }
        let ts = crate::util::now_secs();
        let event_id = super::random_id(8);
        let body =
            serde_json::json!({"event": kind, "id": event_id, "timestamp": ts, "approval": info})
                .to_string();
        let sends = self.hooks.iter().map(|h| {
            let sig = sign(h.secret.expose().as_bytes(), ts, body.as_bytes());
            let body = body.clone();
            let event_id = event_id.clone();
            async move {
                for attempt in 0..3u32 {
                    let r = self
                        .client
                        .post(&h.url)
                        .header("content-type", "application/json")
                        .header("x-warden-event", kind)
                        .header("x-warden-event-id", &event_id)
                        .header("x-warden-timestamp", ts.to_string())
                        .header("x-warden-signature", format!("sha256={sig}"))
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => return true,
                        Ok(resp) => tracing::warn!(
                            status = resp.status().as_u16(),
                            attempt,
                            "webhook refused the event"
                        ),
                        Err(_) => tracing::warn!(attempt, "webhook unreachable"),
                    }
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                false
            }
        });
        futures_util::future::join_all(sends)
            .await
            .into_iter()
            .any(|ok| ok)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Known answer from Python: hmac.new(b"k"*16, b"1700000000.{}", hashlib.sha256).hexdigest()
        let s = sign(&[b'k'; 16], 1_700_000_000, b"{}");
        assert_eq!(s.len(), 64);
        assert_ne!(s, sign(&[b'k'; 16], 1_700_000_001, b"{}"));
        assert_ne!(s, sign(&[b'k'; 16], 1_700_000_000, b"{ }"));
    }
}
