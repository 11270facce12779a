//! The little of MCP that mcp-warden must understand: protocol versions, the headers of the
//! Streamable HTTP transport, and borrowed views of the messages it intercepts.
//!
//! Must not: hold state or do I/O. Everything not named here is forwarded untouched.

use serde::Deserialize;
use serde_json::value::RawValue;

/// Protocol revisions mcp-warden speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_VERSION: &str = "2025-11-25";
/// What a Streamable HTTP request without `MCP-Protocol-Version` is assumed to speak.
pub const DEFAULT_HTTP_VERSION: &str = "2025-03-26";

pub const HEADER_SESSION_ID: &str = "mcp-session-id";
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// The version to answer `initialize` with: the client's if supported, else our latest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r))
        .copied()
        .unwrap_or(LATEST_VERSION)
}

pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// JSON-RPC batches exist only in the 2025-03-26 revision.
pub fn allows_batches(v: &str) -> bool {
    v == "2025-03-26"
}

#[derive(Deserialize, Default)]
pub struct InitializeParams<'a> {
    #[serde(rename = "protocolVersion", default)]
    pub protocol_version: Option<String>,
    #[serde(borrow, default)]
    pub capabilities: Option<&'a RawValue>,
    #[serde(rename = "clientInfo", borrow, default)]
    pub client_info: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct InitializeResult {
    #[serde(rename = "protocolVersion")]
    pub protocol_version: String,
    #[serde(default)]
    pub capabilities: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "serverInfo", default)]
    pub server_info: Option<serde_json::Value>,
    #[serde(default)]
    pub instructions: Option<String>,
}

/// `params` of a request naming its target: `tools/call`, `prompts/get`.
#[derive(Deserialize)]
pub struct NamedParams<'a> {
    #[serde(borrow)]
    pub name: &'a RawValue,
}

/// `params` of `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
#[derive(Deserialize)]
pub struct UriParams<'a> {
    #[serde(borrow)]
    pub uri: &'a RawValue,
}

/// `params` of `completion/complete`.
#[derive(Deserialize)]
pub struct CompleteParams<'a> {
    #[serde(rename = "ref", borrow)]
    pub reference: CompleteRef<'a>,
}

#[derive(Deserialize)]
pub struct CompleteRef<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub uri: Option<&'a RawValue>,
}

/// Any params with `_meta.progressToken`.
#[derive(Deserialize)]
pub struct MetaParams<'a> {
    #[serde(rename = "_meta", borrow, default)]
    pub meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
pub struct Meta<'a> {
    #[serde(rename = "progressToken", borrow, default)]
    pub progress_token: Option<&'a RawValue>,
}

/// `params` of `notifications/progress`.
#[derive(Deserialize)]
pub struct ProgressParams<'a> {
    #[serde(rename = "progressToken", borrow)]
    pub progress_token: &'a RawValue,
}

/// `params` of `notifications/cancelled`.
#[derive(Deserialize)]
pub struct CancelledParams<'a> {
    #[serde(rename = "requestId", borrow)]
    pub request_id: &'a RawValue,
}

/// A page of a `*/list` result: the items stay raw.
#[derive(Deserialize)]
pub struct ListPage<'a> {
    #[serde(borrow, default)]
    pub tools: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    pub prompts: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    pub resources: Option<Vec<&'a RawValue>>,
    #[serde(rename = "resourceTemplates", borrow, default)]
    pub resource_templates: Option<Vec<&'a RawValue>>,
    #[serde(rename = "nextCursor", default)]
    pub next_cursor: Option<String>,
}

/// The identifying member of a listed item: `name` for tools and prompts, `uri` for resources,
/// `uriTemplate` for templates.
#[derive(Deserialize)]
pub struct ItemKey<'a> {
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub uri: Option<&'a RawValue>,
    #[serde(rename = "uriTemplate", borrow, default)]
    pub uri_template: Option<&'a RawValue>,
    /// Tools: the input schema (captured in the same pass, for the schema profiles).
    #[serde(rename = "inputSchema", borrow, default)]
    pub input_schema: Option<&'a RawValue>,
}

/// Decodes a raw JSON string value.
pub fn raw_str(v: &RawValue) -> Option<String> {
    let s = v.get();
    // Most names carry no escapes: take the bytes between the quotes as they are.
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if !inner.contains(['\\', '"']) {
            return Some(inner.to_string());
        }
    }
    serde_json::from_str::<String>(s).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
        assert!(allows_batches("2025-03-26"));
        assert!(!allows_batches("2025-06-18"));
    }
}
