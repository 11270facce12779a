//! Transport-independent MCP request handling: lifecycle, tools, prompts, resources, logging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::consent::Mailer;
use crate::peer::Peer;
use crate::rpc::{self, RpcError};
use crate::tools;

/// The protocol revision we speak natively.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";
/// Every revision we accept; `initialize` echoes the client's if it is one of these.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] =
    &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

const INSTRUCTIONS: &str =
    "mcp-warden-demo is a demonstration MCP server bundled with mcp-warden. \
Tools: echo (returns its message), add (adds two numbers), image (a small PNG), slow (reports \
progress, cancellable), send_email (simulated; it asks for a human's approval through a consent \
envelope before sending anything) and sent_count (how many emails were really sent). \
Prompt: greeting. Resources: demo://readme and demo://item/{id}.";

const README: &str = "mcp-warden-demo\n\
===============\n\
\n\
The demo MCP server bundled with mcp-warden. Run it behind the proxy and try:\n\
\n\
- echo {\"message\": \"hi\"}: returns \"hi\".\n\
- add {\"a\": 2, \"b\": 3}: returns 5.\n\
- slow {\"steps\": 5, \"delay_ms\": 100}: reports progress, then finishes.\n\
- send_email {\"to\": ..., \"subject\": ..., \"body\": ...}: answers with a consent envelope;\n\
  mcp-warden asks a human, and only on approval is the email (pretend-)sent.\n\
- sent_count {}: how many emails were actually sent.\n";

/// The MCP (syslog) log levels, least severe first.
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Startup options that affect request handling.
#[derive(Debug, Clone)]
pub struct Options {
    /// Offer the test-only tools (crash, hang, garbage, ...).
    pub test_tools: bool,
    /// How long a consent `action_id` stays valid.
    pub consent_ttl: Duration,
}

/// The server state shared by every connection.
pub struct Server {
    test_tools: bool,
    mailer: Mailer,
    tool_list: Value,
    /// 1 + the index in [`LOG_LEVELS`] of the level set with `logging/setLevel`; 0 until then
    /// (no log notifications are sent before the client asks for them).
    log_level: AtomicUsize,
}

impl Server {
    pub fn new(options: &Options) -> Self {
        Server {
            test_tools: options.test_tools,
            mailer: Mailer::new(options.consent_ttl),
            tool_list: tools::tool_list(options.test_tools),
            log_level: AtomicUsize::new(0),
        }
    }

    pub fn test_tools(&self) -> bool {
        self.test_tools
    }

    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }

    /// The level last set with `logging/setLevel`, if any.
    #[cfg(test)]
    pub fn log_level(&self) -> Option<&'static str> {
        let n = self.log_level.load(Ordering::Relaxed);
        n.checked_sub(1).and_then(|i| LOG_LEVELS.get(i)).copied()
    }

    /// Sends a `notifications/message` at `level` (an entry of [`LOG_LEVELS`]) if the client
    /// asked for that level or a less severe one.
    pub fn log(
        &self,
        peer: &Peer,
        level: &'static str,
        logger: &str,
        data: impl FnOnce() -> Value,
    ) {
        let threshold = self.log_level.load(Ordering::Relaxed);
        if threshold == 0 {
            return;
        }
        let Some(rank) = LOG_LEVELS.iter().position(|l| *l == level) else {
            return;
        };
        if rank + 1 >= threshold {
            peer.notify(
                "notifications/message",
                &json!({"level": level, "logger": logger, "data": data()}),
            );
        }
    }

    /// Whether this request may take long or wait on the client (see [`tools::is_long_running`]).
    pub fn is_long_running(method: &str, params: Option<&Value>) -> bool {
        method == "tools/call"
            && params
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .is_some_and(tools::is_long_running)
    }

    /// Handles one request.
    pub async fn handle_request(
        &self,
        method: &str,
        mut params: Option<Value>,
        peer: &Peer,
    ) -> Result<Value, RpcError> {
        match method {
            "tools/call" => self.call_tool(params, peer).await,
            "initialize" => Ok(initialize(params.as_ref())),
            "ping" => Ok(rpc::empty_object()),
            "tools/list" => Ok(self.tool_list.clone()),
            "prompts/list" => Ok(prompt_list()),
            "prompts/get" => get_prompt(params),
            "resources/list" => Ok(resource_list()),
            "resources/templates/list" => Ok(resource_templates()),
            "resources/read" => match rpc::take_param(&mut params, "uri") {
                Some(Value::String(uri)) => read_resource(&uri),
                _ => Err(RpcError::invalid_params(
                    "Invalid params: \"uri\" must be a string",
                )),
            },
            "logging/setLevel" => {
                let level = rpc::take_param(&mut params, "level");
                let level = level.as_ref().and_then(Value::as_str);
                match LOG_LEVELS.iter().position(|l| Some(*l) == level) {
                    Some(i) => {
                        self.log_level.store(i + 1, Ordering::Relaxed);
                        Ok(rpc::empty_object())
                    }
                    None => Err(RpcError::invalid_params(format!(
                        "Invalid params: \"level\" must be one of {}",
                        LOG_LEVELS.join(", ")
                    ))),
                }
            }
            _ => Err(RpcError::new(
                rpc::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )),
        }
    }

    async fn call_tool(&self, params: Option<Value>, peer: &Peer) -> Result<Value, RpcError> {
        let Some(Value::Object(mut params)) = params else {
            return Err(RpcError::invalid_params(
                "Invalid params: tools/call needs an object with a \"name\"",
            ));
        };
        let Some(Value::String(name)) = params.remove("name") else {
            return Err(RpcError::invalid_params(
                "Invalid params: \"name\" must be a string",
            ));
        };
        let args = match params.remove("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid params: \"arguments\" must be an object",
                ))
            }
        };
        let progress_token = params
            .get_mut("_meta")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove("progressToken"))
            .filter(|t| !t.is_null());
        self.log(peer, "debug", "tools", || {
            json!(format!("tools/call {name}"))
        });
        tools::call(self, &name, args, progress_token, peer).await
    }
}

fn initialize(params: Option<&Value>) -> Value {
    let requested = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    let version = SUPPORTED_PROTOCOL_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(LATEST_PROTOCOL_VERSION);
    json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": true},
            "prompts": {"listChanged": false},
            "resources": {"subscribe": false, "listChanged": false},
            "logging": {},
        },
        "serverInfo": {
            "name": "mcp-warden-demo",
            "title": "mcp-warden demo server",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": INSTRUCTIONS,
    })
}

fn prompt_list() -> Value {
    json!({"prompts": [{
        "name": "greeting",
        "title": "Greeting",
        "description": "Greets someone by name.",
        "arguments": [{"name": "name", "description": "Who to greet.", "required": true}],
    }]})
}

fn get_prompt(params: Option<Value>) -> Result<Value, RpcError> {
    let params = params.unwrap_or(Value::Null);
    let name = params.get("name").and_then(Value::as_str);
    if name != Some("greeting") {
        return Err(RpcError::invalid_params(format!(
            "Unknown prompt: {}",
            name.unwrap_or("")
        )));
    }
    let Some(who) = params
        .get("arguments")
        .and_then(|a| a.get("name"))
        .and_then(Value::as_str)
    else {
        return Err(RpcError::invalid_params("Missing required argument: name"));
    };
    Ok(json!({
        "description": "A greeting.",
        "messages": [{"role": "user", "content": {"type": "text", "text": format!("Hello, {who}!")}}],
    }))
}

fn resource_list() -> Value {
    json!({"resources": [{
        "uri": "demo://readme",
        "name": "readme",
        "title": "About this demo server",
        "description": "What the demo server offers and how to try it.",
        "mimeType": "text/plain",
        "size": README.len(),
    }]})
}

fn resource_templates() -> Value {
    json!({"resourceTemplates": [{
        "uriTemplate": "demo://item/{id}",
        "name": "item",
        "title": "Demo item",
        "description": "A numbered demo item; reading demo://item/7 gives \"item 7\".",
        "mimeType": "text/plain",
    }]})
}

fn read_resource(uri: &str) -> Result<Value, RpcError> {
    let text = if uri == "demo://readme" {
        README.to_owned()
    } else if let Some(id) = uri
        .strip_prefix("demo://item/")
        .filter(|id| !id.is_empty() && !id.contains(['/', '?', '#']))
    {
        format!("item {id}")
    } else {
        return Err(RpcError::new(rpc::RESOURCE_NOT_FOUND, "Resource not found")
            .with_data(json!({ "uri": uri })));
    };
    Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(test_tools: bool) -> Server {
        Server::new(&Options {
            test_tools,
            consent_ttl: Duration::from_secs(60),
        })
    }

    async fn req(s: &Server, method: &str, params: Value) -> Result<Value, RpcError> {
        s.handle_request(method, Some(params), &Peer::default())
            .await
    }

    #[tokio::test]
    async fn negotiates_versions() {
        let s = server(false);
        for v in SUPPORTED_PROTOCOL_VERSIONS {
            let r = req(&s, "initialize", json!({"protocolVersion": v})).await;
            assert_eq!(r.map(|r| r["protocolVersion"].clone()), Ok(json!(v)));
        }
        let r = req(&s, "initialize", json!({"protocolVersion": "1999-01-01"})).await;
        assert_eq!(
            r.map(|r| r["protocolVersion"].clone()),
            Ok(json!(LATEST_PROTOCOL_VERSION))
        );
    }

    #[tokio::test]
    async fn tools_and_errors() {
        let s = server(false);
        assert_eq!(s.log_level(), None);
        let r = req(
            &s,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await;
        assert_eq!(r, Ok(json!({"content": [{"type": "text", "text": "hi"}]})));
        let r = req(
            &s,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
        )
        .await;
        assert_eq!(
            r,
            Ok(
                json!({"content": [{"type": "text", "text": "5"}], "structuredContent": {"sum": 5}})
            )
        );
        let r = req(&s, "tools/call", json!({"name": "nope"})).await;
        assert_eq!(r, Err(RpcError::invalid_params("Unknown tool: nope")));
        // Test tools are unknown unless enabled.
        let r = req(&s, "tools/call", json!({"name": "crash"})).await;
        assert_eq!(r, Err(RpcError::invalid_params("Unknown tool: crash")));
        let r = req(&s, "nope/nope", json!({})).await;
        assert_eq!(r.map_err(|e| e.code), Err(rpc::METHOD_NOT_FOUND));
        assert_eq!(req(&s, "ping", json!({})).await, Ok(json!({})));
        assert_eq!(
            req(&s, "logging/setLevel", json!({"level": "debug"})).await,
            Ok(json!({}))
        );
        assert_eq!(s.log_level(), Some("debug"));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_reports_progress() {
        let s = server(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let peer = Peer::http(Some(tx));
        let r = s
            .handle_request(
                "tools/call",
                Some(json!({"name": "slow", "arguments": {"steps": 3, "delay_ms": 1000}, "_meta": {"progressToken": "p"}})),
                &peer,
            )
            .await;
        assert_eq!(r, Ok(tools::text_result("done after 3 steps")));
        let mut seen = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            seen.push(serde_json::from_slice::<Value>(&msg).expect("json"));
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[2]["params"],
            json!({"progressToken": "p", "progress": 3, "total": 3, "message": "step 3 of 3"})
        );
    }

    #[tokio::test]
    async fn prompts_and_resources() {
        let s = server(false);
        let r = req(
            &s,
            "prompts/get",
            json!({"name": "greeting", "arguments": {"name": "Ada"}}),
        )
        .await;
        assert_eq!(
            r.map(|r| r["messages"][0]["content"]["text"].clone()),
            Ok(json!("Hello, Ada!"))
        );
        let r = req(&s, "resources/read", json!({"uri": "demo://item/7"})).await;
        assert_eq!(
            r.map(|r| r["contents"][0]["text"].clone()),
            Ok(json!("item 7"))
        );
        let r = req(&s, "resources/read", json!({"uri": "demo://readme"})).await;
        assert!(r.is_ok());
        let r = req(&s, "resources/read", json!({"uri": "demo://nope"})).await;
        assert_eq!(
            r.map_err(|e| (e.code, e.message)),
            Err((-32002, "Resource not found".into()))
        );
    }
}
