//! JSON-RPC 2.0 plumbing shared by both transports: classifying incoming messages, encoding
//! outgoing ones, and tracking in-flight requests so `notifications/cancelled` can stop them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP's "resource not found" code.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
}

/// One incoming JSON-RPC message, classified.
#[derive(Debug)]
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// The client's answer to a request the server sent (sampling, elicitation).
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
    /// Valid JSON that is not a valid JSON-RPC 2.0 message. `id` is the request id when one could
    /// be recovered, otherwise null.
    Invalid { id: Value, reason: &'static str },
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_number()
}

/// Classifies a parsed JSON value. Batches (arrays) are not part of MCP 2025-06-18 and later, so
/// they are rejected as invalid requests.
pub fn classify(value: Value) -> Incoming {
    let Value::Object(mut obj) = value else {
        return Incoming::Invalid {
            id: Value::Null,
            reason: "expected a JSON-RPC 2.0 object (batches are not supported)",
        };
    };
    let id = obj.remove("id");
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Incoming::Invalid {
            id: id.filter(valid_id).unwrap_or(Value::Null),
            reason: "missing or wrong \"jsonrpc\" member (must be \"2.0\")",
        };
    }
    match obj.remove("method") {
        Some(Value::String(method)) => {
            let params = obj.remove("params");
            if params
                .as_ref()
                .is_some_and(|p| !(p.is_object() || p.is_array()))
            {
                return Incoming::Invalid {
                    id: id.filter(valid_id).unwrap_or(Value::Null),
                    reason: "\"params\" must be an object or an array",
                };
            }
            match id {
                None => Incoming::Notification { method, params },
                Some(id) if valid_id(&id) => Incoming::Request { id, method, params },
                Some(_) => Incoming::Invalid {
                    id: Value::Null,
                    reason: "\"id\" must be a string or a number",
                },
            }
        }
        Some(_) => Incoming::Invalid {
            id: id.filter(valid_id).unwrap_or(Value::Null),
            reason: "\"method\" must be a string",
        },
        None => {
            let outcome = match (obj.remove("result"), obj.remove("error")) {
                (Some(result), None) => Ok(result),
                (None, Some(error)) => Err(error),
                _ => {
                    return Incoming::Invalid {
                        id: Value::Null,
                        reason: "a response needs exactly one of \"result\" and \"error\"",
                    }
                }
            };
            match id {
                Some(id) => Incoming::Response { id, outcome },
                None => Incoming::Invalid {
                    id: Value::Null,
                    reason: "a response needs an \"id\"",
                },
            }
        }
    }
}

#[derive(Serialize)]
struct ResultMsg<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: &'a Value,
}

#[derive(Serialize)]
struct ErrorMsg<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: &'a RpcError,
}

#[derive(Serialize)]
struct NotificationMsg<'a> {
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a Value,
}

#[derive(Serialize)]
struct RequestMsg<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a Value,
}

fn to_vec<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these structs cannot fail: every map key is a string and `Value` always
    // serialises. Fall back to an internal error rather than panicking, just in case.
    serde_json::to_vec(msg).unwrap_or_else(|_| {
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"Internal error: could not serialise message"}}"#.to_vec()
    })
}

/// Encodes a response to request `id`.
pub fn encode_response(id: &Value, outcome: &Result<Value, RpcError>) -> Vec<u8> {
    match outcome {
        Ok(result) => to_vec(&ResultMsg {
            jsonrpc: "2.0",
            id,
            result,
        }),
        Err(error) => encode_error(id, error),
    }
}

/// Encodes an error response.
pub fn encode_error(id: &Value, error: &RpcError) -> Vec<u8> {
    to_vec(&ErrorMsg {
        jsonrpc: "2.0",
        id,
        error,
    })
}

/// Encodes a notification.
pub fn encode_notification(method: &str, params: &Value) -> Vec<u8> {
    to_vec(&NotificationMsg {
        jsonrpc: "2.0",
        method,
        params,
    })
}

/// Encodes a server→client request.
pub fn encode_request(id: u64, method: &str, params: &Value) -> Vec<u8> {
    to_vec(&RequestMsg {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
}

/// The key used to look a request up by id: its JSON text, so `1` and `"1"` stay distinct.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Takes the member `name` out of an optional params object.
pub fn take_param(params: &mut Option<Value>, name: &str) -> Option<Value> {
    params.as_mut()?.as_object_mut()?.remove(name)
}

/// The `params._meta.progressToken` of a request, if any (and not null).
pub fn progress_token(params: Option<&Value>) -> Option<&Value> {
    params?
        .get("_meta")?
        .get("progressToken")
        .filter(|t| !t.is_null())
}

/// An empty JSON object, the result of `ping` and friends.
pub fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The requests of one client connection that are still being worked on, so that
/// `notifications/cancelled` can stop them.
#[derive(Default)]
pub struct Inflight {
    next_gen: AtomicU64,
    map: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
}

impl Inflight {
    /// Registers request `id`; the returned ticket resolves `cancelled()` when the request is
    /// cancelled, and tells via `finish()` whether a response may still be sent.
    pub fn register(self: &Arc<Self>, id: &Value) -> Ticket {
        let key = id_key(id);
        let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // A duplicate id replaces (and thereby cancels) the older request.
        lock(&self.map).insert(key.clone(), (gen, tx));
        Ticket {
            inflight: Arc::clone(self),
            key,
            gen,
            cancel: rx,
        }
    }

    /// Cancels request `id` if it is still running. Returns whether it was.
    pub fn cancel(&self, id: &Value) -> bool {
        lock(&self.map).remove(&id_key(id)).is_some()
    }

    /// Cancels every running request.
    pub fn cancel_all(&self) {
        lock(&self.map).clear();
    }

    fn remove_if(&self, key: &str, gen: u64) -> bool {
        let mut map = lock(&self.map);
        match map.get(key) {
            Some((g, _)) if *g == gen => {
                map.remove(key);
                true
            }
            _ => false,
        }
    }
}

/// One registered in-flight request; unregisters itself when dropped.
pub struct Ticket {
    inflight: Arc<Inflight>,
    key: String,
    gen: u64,
    cancel: oneshot::Receiver<()>,
}

impl Ticket {
    /// Resolves once the request has been cancelled.
    pub async fn cancelled(&mut self) {
        // The sender is only ever dropped (never used), by `cancel`/`cancel_all` or a duplicate id.
        let _ = (&mut self.cancel).await;
    }

    /// Unregisters the request; `true` if it was not cancelled, i.e. a response may be sent.
    pub fn finish(self) -> bool {
        self.inflight.remove_if(&self.key, self.gen)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.inflight.remove_if(&self.key, self.gen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_messages() {
        assert!(matches!(
            classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Incoming::Request { .. }
        ));
        assert!(matches!(
            classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
            Incoming::Notification { .. }
        ));
        assert!(matches!(
            classify(json!({"jsonrpc":"2.0","id":1,"result":{}})),
            Incoming::Response { .. }
        ));
        assert!(matches!(
            classify(json!({"id":1,"method":"ping"})),
            Incoming::Invalid { .. }
        ));
        assert!(matches!(
            classify(json!({"jsonrpc":"2.0","id":null,"method":"ping"})),
            Incoming::Invalid { .. }
        ));
        assert!(matches!(classify(json!([1, 2])), Incoming::Invalid { .. }));
    }

    #[tokio::test]
    async fn cancelled_ticket_may_not_answer() {
        let inflight = Arc::new(Inflight::default());
        let mut t = inflight.register(&json!(7));
        assert!(inflight.cancel(&json!(7)));
        t.cancelled().await;
        assert!(!t.finish());
        let t = inflight.register(&json!(8));
        assert!(!inflight.cancel(&json!("8")));
        assert!(t.finish());
        assert!(!inflight.cancel(&json!(8)));
    }
}
