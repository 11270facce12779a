//! The client as seen from inside a request handler: where notifications go, and (on stdio) how
//! to send the client a request of our own and wait for its answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::rpc;

/// Encoded messages (one JSON text each, no framing) on their way to the client.
pub type Outbox = mpsc::UnboundedSender<Vec<u8>>;

/// How long a server→client request may stay unanswered.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Requests the server sent to the client and is waiting on, by the server's own id.
pub struct ClientRequests {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>,
}

impl Default for ClientRequests {
    fn default() -> Self {
        ClientRequests {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl ClientRequests {
    /// Delivers the client's response to the waiting request. Returns `false` for unknown ids.
    pub fn resolve(&self, id: &Value, outcome: Result<Value, Value>) -> bool {
        let Some(id) = id.as_u64() else {
            return false;
        };
        match lock(&self.pending).remove(&id) {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }
}

/// Removes a pending server→client request when its waiter goes away (answered, timed out or
/// cancelled).
struct PendingGuard<'a> {
    requests: &'a ClientRequests,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.requests.pending).remove(&self.id);
    }
}

/// The client, from a handler's point of view.
#[derive(Clone, Default)]
pub struct Peer {
    /// Where notifications (and, on stdio, raw lines and requests) go; `None` when this response
    /// has no channel for them (a plain JSON HTTP response).
    out: Option<Outbox>,
    /// Server→client requests; only on stdio.
    requests: Option<Arc<ClientRequests>>,
    /// Whether raw (non-JSON) lines may be written: only on stdio.
    raw_lines: bool,
}

impl Peer {
    /// A stdio peer: everything goes to the stdout writer.
    pub fn stdio(out: Outbox, requests: Arc<ClientRequests>) -> Self {
        Peer {
            out: Some(out),
            requests: Some(requests),
            raw_lines: true,
        }
    }

    /// An HTTP peer; notifications go to the SSE stream when the response is one.
    pub fn http(sse: Option<Outbox>) -> Self {
        Peer {
            out: sse,
            requests: None,
            raw_lines: false,
        }
    }

    /// Sends a notification, if this response has a channel for them.
    pub fn notify(&self, method: &str, params: &Value) {
        if let Some(out) = &self.out {
            // A send error means the client has gone; nothing to do.
            let _ = out.send(rpc::encode_notification(method, params));
        }
    }

    /// Writes a raw line to the transport (stdio only). Returns whether it could.
    pub fn raw_line(&self, line: &[u8]) -> bool {
        match (&self.out, self.raw_lines) {
            (Some(out), true) => out.send(line.to_vec()).is_ok(),
            _ => false,
        }
    }

    /// Whether this transport can carry server→client requests.
    pub fn can_request(&self) -> bool {
        self.requests.is_some() && self.out.is_some()
    }

    /// Sends the client a request and waits for its answer. `Err` carries a human-readable reason
    /// (unsupported transport, timeout, or the client's JSON-RPC error).
    pub async fn request(&self, method: &str, params: &Value) -> Result<Value, String> {
        let (Some(out), Some(requests)) = (&self.out, &self.requests) else {
            return Err(format!(
                "{method} is not supported on this transport (stdio only)"
            ));
        };
        let id = requests.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&requests.pending).insert(id, tx);
        let _guard = PendingGuard { requests, id };
        if out.send(rpc::encode_request(id, method, params)).is_err() {
            return Err("the client has gone away".to_owned());
        }
        match tokio::time::timeout(CLIENT_REQUEST_TIMEOUT, rx).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(format!(
                "the client answered {method} with an error: {error}"
            )),
            Ok(Err(_)) => Err("the client has gone away".to_owned()),
            Err(_) => Err(format!(
                "the client did not answer {method} within {} s",
                CLIENT_REQUEST_TIMEOUT.as_secs()
            )),
        }
    }
}
