//! The demo tools: their advertised definitions and their implementations.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::peer::Peer;
use crate::rpc::RpcError;
use crate::server::Server;

/// An 8×8 checkerboard PNG (81 bytes), base64-encoded.
pub const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAGElEQVR42mP4X8EgF3UCk8QuCiQZBqUOAPzXVuGDcw6AAAAAAElFTkSuQmCC";

/// What the `garbage` test tool writes to stdout.
pub const GARBAGE_LINE: &[u8] = b"this is not json {{{";

const SLOW_MAX_STEPS: u64 = 10_000;
const SLOW_MAX_DELAY_MS: u64 = 60_000;

/// A successful tool result with one text block.
pub fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

/// A failed tool result (`isError: true`) with one text block.
pub fn error_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": true})
}

/// Tools that may take a while or wait on the client; the stdio transport runs these in their
/// own task so it stays responsive (and can deliver the client's answers to `sample`/`elicit`).
pub fn is_long_running(name: &str) -> bool {
    matches!(name, "slow" | "hang" | "sample" | "elicit")
}

fn is_test_tool(name: &str) -> bool {
    matches!(
        name,
        "crash" | "hang" | "garbage" | "notify_list_changed" | "sample" | "elicit"
    )
}

fn read_only() -> Value {
    json!({"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false})
}

fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

/// The `tools/list` result.
pub fn tool_list(test_tools: bool) -> Value {
    let mut tools = vec![
        json!({
            "name": "echo",
            "title": "Echo",
            "description": "Returns the message unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": {"message": {"type": "string", "description": "The text to echo back."}},
                "required": ["message"]
            },
            "annotations": read_only()
        }),
        json!({
            "name": "add",
            "title": "Add",
            "description": "Adds two numbers.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "a": {"type": "number", "description": "First addend."},
                    "b": {"type": "number", "description": "Second addend."}
                },
                "required": ["a", "b"]
            },
            "outputSchema": {
                "type": "object",
                "properties": {"sum": {"type": "number"}},
                "required": ["sum"]
            },
            "annotations": read_only()
        }),
        json!({
            "name": "image",
            "title": "Image",
            "description": "Returns a small PNG image (an 8x8 checkerboard).",
            "inputSchema": no_args(),
            "annotations": read_only()
        }),
        json!({
            "name": "slow",
            "title": "Slow",
            "description": "Takes `steps` steps of `delay_ms` milliseconds each, reporting progress \
                            after each step when the request carries a progress token. Cancellable.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "steps": {"type": "integer", "minimum": 0, "maximum": SLOW_MAX_STEPS, "default": 5,
                              "description": "How many steps."},
                    "delay_ms": {"type": "integer", "minimum": 0, "maximum": SLOW_MAX_DELAY_MS, "default": 100,
                                 "description": "Milliseconds per step."}
                }
            },
            "annotations": read_only()
        }),
        json!({
            "name": "send_email",
            "title": "Send email",
            "description": "Sends an email (simulated). Needs a human's approval: the first call \
                            answers with a consent envelope instead of sending.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "to": {"type": "string", "description": "Recipient address."},
                    "subject": {"type": "string", "description": "Subject line."},
                    "body": {"type": "string", "description": "Message body."}
                },
                "required": ["to", "subject", "body"]
            },
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": true}
        }),
        json!({
            "name": "sent_count",
            "title": "Sent count",
            "description": "How many emails send_email has actually sent since the server started.",
            "inputSchema": no_args(),
            "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        }),
    ];
    if test_tools {
        tools.extend([
            json!({
                "name": "crash",
                "description": "Test tool: the server process exits at once with code 3, without answering.",
                "inputSchema": no_args()
            }),
            json!({
                "name": "hang",
                "description": "Test tool: never answers (until cancelled).",
                "inputSchema": no_args()
            }),
            json!({
                "name": "garbage",
                "description": "Test tool: writes a line of non-JSON to stdout (stdio only), then answers \"ok\".",
                "inputSchema": no_args()
            }),
            json!({
                "name": "notify_list_changed",
                "description": "Test tool: sends notifications/tools/list_changed, then answers \"ok\".",
                "inputSchema": no_args()
            }),
            json!({
                "name": "sample",
                "description": "Test tool: asks the client for sampling/createMessage and returns its text (stdio only).",
                "inputSchema": {
                    "type": "object",
                    "properties": {"prompt": {"type": "string"}},
                    "required": ["prompt"]
                }
            }),
            json!({
                "name": "elicit",
                "description": "Test tool: asks the client for elicitation/create and returns its answer (stdio only).",
                "inputSchema": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"]
                }
            }),
        ]);
    }
    json!({ "tools": tools })
}

fn take_string(args: &mut Map<String, Value>, name: &str) -> Result<String, Value> {
    match args.remove(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(error_result(format!("argument `{name}` must be a string"))),
        None => Err(error_result(format!("missing required argument `{name}`"))),
    }
}

fn number_arg(args: &Map<String, Value>, name: &str) -> Result<serde_json::Number, Value> {
    match args.get(name) {
        Some(Value::Number(n)) => Ok(n.clone()),
        Some(_) => Err(error_result(format!("argument `{name}` must be a number"))),
        None => Err(error_result(format!("missing required argument `{name}`"))),
    }
}

fn int_arg(args: &Map<String, Value>, name: &str, default: u64, max: u64) -> Result<u64, Value> {
    let n = match args.get(name) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Some(_) => None,
    };
    match n {
        Some(n) if n <= max => Ok(n),
        _ => Err(error_result(format!(
            "argument `{name}` must be an integer between 0 and {max}"
        ))),
    }
}

/// `a + b`, exact for integers, as JSON.
fn sum(a: &serde_json::Number, b: &serde_json::Number) -> Value {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(s) = x.checked_add(y) {
            return json!(s);
        }
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        if let Some(s) = x.checked_add(y) {
            return json!(s);
        }
    }
    let s = a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN);
    // Non-finite sums serialise as null; say so rather than lie.
    json!(s)
}

/// Text of a `sampling/createMessage` result: its text content block (or the first text block of
/// an array of them).
fn sampled_text(result: &Value) -> Option<&str> {
    let content = result.get("content")?;
    let block = match content {
        Value::Array(blocks) => blocks.iter().find(|b| b["type"] == "text")?,
        other => other,
    };
    block.get("text")?.as_str()
}

/// Runs tool `name`. `Err` only for protocol errors (unknown tool); everything a tool itself
/// objects to is an `isError` result.
pub async fn call(
    server: &Server,
    name: &str,
    mut args: Map<String, Value>,
    progress_token: Option<Value>,
    peer: &Peer,
) -> Result<Value, RpcError> {
    if is_test_tool(name) && !server.test_tools() {
        return Err(unknown_tool(name));
    }
    Ok(match name {
        "echo" => match take_string(&mut args, "message") {
            Ok(message) => text_result(message),
            Err(e) => e,
        },
        "add" => match (number_arg(&args, "a"), number_arg(&args, "b")) {
            (Ok(a), Ok(b)) => {
                let s = sum(&a, &b);
                if s.is_null() {
                    error_result("the sum is not a finite number")
                } else {
                    let mut r = text_result(s.to_string());
                    r["structuredContent"] = json!({ "sum": s });
                    r
                }
            }
            (Err(e), _) | (_, Err(e)) => e,
        },
        "image" => {
            json!({"content": [{"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}]})
        }
        "slow" => {
            let (steps, delay_ms) = match (
                int_arg(&args, "steps", 5, SLOW_MAX_STEPS),
                int_arg(&args, "delay_ms", 100, SLOW_MAX_DELAY_MS),
            ) {
                (Ok(s), Ok(d)) => (s, d),
                (Err(e), _) | (_, Err(e)) => return Ok(e),
            };
            let delay = Duration::from_millis(delay_ms);
            for step in 1..=steps {
                tokio::time::sleep(delay).await;
                if let Some(token) = &progress_token {
                    peer.notify(
                        "notifications/progress",
                        &json!({
                            "progressToken": token,
                            "progress": step,
                            "total": steps,
                            "message": format!("step {step} of {steps}"),
                        }),
                    );
                }
            }
            text_result(format!("done after {steps} steps"))
        }
        "send_email" => {
            let result = server
                .mailer()
                .call(&args, Instant::now(), crate::random_hex::<16>);
            let sc = &result["structuredContent"];
            if sc["requires_confirmation"] == true {
                server.log(peer, "notice", "send_email", || {
                    json!(format!("awaiting confirmation: {}", sc["summary"]))
                });
            } else if sc["sent"] == true {
                server.log(peer, "notice", "send_email", || {
                    json!(format!("sent to {}", sc["to"]))
                });
            } else {
                server.log(peer, "warning", "send_email", || {
                    json!("refused a send_email call")
                });
            }
            result
        }
        "sent_count" => text_result(server.mailer().sent_count().to_string()),
        "crash" => {
            eprintln!("mcp-warden-demo: crash tool called, exiting with code 3");
            std::process::exit(3)
        }
        "hang" => std::future::pending().await,
        "garbage" => {
            peer.raw_line(GARBAGE_LINE);
            text_result("ok")
        }
        "notify_list_changed" => {
            peer.notify("notifications/tools/list_changed", &json!({}));
            text_result("ok")
        }
        "sample" => {
            let prompt = match take_string(&mut args, "prompt") {
                Ok(p) => p,
                Err(e) => return Ok(e),
            };
            if !peer.can_request() {
                return Ok(error_result(
                    "sample is unsupported on this transport (stdio only)",
                ));
            }
            let params = json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                "maxTokens": 100,
            });
            match peer.request("sampling/createMessage", &params).await {
                Ok(result) => match sampled_text(&result) {
                    Some(text) => text_result(format!("sampled: {text}")),
                    None => {
                        error_result(format!("the sampling result has no text content: {result}"))
                    }
                },
                Err(e) => error_result(e),
            }
        }
        "elicit" => {
            let message = match take_string(&mut args, "message") {
                Ok(m) => m,
                Err(e) => return Ok(e),
            };
            if !peer.can_request() {
                return Ok(error_result(
                    "elicit is unsupported on this transport (stdio only)",
                ));
            }
            let params = json!({
                "message": message,
                "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
            });
            match peer.request("elicitation/create", &params).await {
                Ok(result) => {
                    let action = result.get("action").and_then(Value::as_str).unwrap_or("");
                    let content = result.get("content").unwrap_or(&Value::Null);
                    text_result(format!("elicited: {action} {content}"))
                }
                Err(e) => error_result(e),
            }
        }
        _ => return Err(unknown_tool(name)),
    })
}

fn unknown_tool(name: &str) -> RpcError {
    RpcError::invalid_params(format!("Unknown tool: {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_constant_is_a_png() {
        // "\x89PNG\r\n\x1a\n" base64-encodes to this prefix.
        assert!(PNG_BASE64.starts_with("iVBORw0KGgo"));
        assert_eq!(PNG_BASE64.len() % 4, 0);
    }

    #[test]
    fn send_email_schema_hides_confirmation_token() {
        let list = tool_list(true);
        let tools = list["tools"].as_array().expect("tools");
        let send = tools
            .iter()
            .find(|t| t["name"] == "send_email")
            .expect("send_email");
        assert!(send["inputSchema"]["properties"]
            .get("confirmation_token")
            .is_none());
        assert!(!list.to_string().contains("confirmation_token"));
        for t in tools {
            assert_eq!(t["inputSchema"]["type"], "object");
        }
        assert_eq!(tool_list(false)["tools"].as_array().map(Vec::len), Some(6));
    }

    #[test]
    fn sums() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(sum(&n(json!(2)), &n(json!(3))), json!(5));
        assert_eq!(sum(&n(json!(-2)), &n(json!(0.5))), json!(-1.5));
        assert_eq!(sum(&n(json!(u64::MAX)), &n(json!(0))), json!(u64::MAX));
    }
}
