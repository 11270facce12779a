//! The consent envelope, as upstream servers speak it (see PRODUCT.md): a `tools/call` result
//! whose `structuredContent` — or the JSON text of a `text` content block — is an object with
//! `requires_confirmation: true` and a non-empty string `action_id`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The server-side single-use token. Never shown to the agent, never logged at info level.
    pub action_id: String,
    pub summary: Option<String>,
    pub expires_in_seconds: Option<u64>,
}

impl std::fmt::Display for Envelope {
    // Deliberately without the action id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consent envelope ({})",
            self.summary.as_deref().unwrap_or("no summary")
        )
    }
}

fn from_object(v: &Value) -> Option<Envelope> {
    let o = v.as_object()?;
    if o.get("requires_confirmation") != Some(&Value::Bool(true)) {
        return None;
    }
    let action_id = o.get("action_id")?.as_str()?.to_string();
    if action_id.is_empty() {
        return None;
    }
    Some(Envelope {
        action_id,
        summary: o.get("summary").and_then(Value::as_str).map(str::to_string),
        expires_in_seconds: o.get("expires_in_seconds").and_then(Value::as_u64),
    })
}

/// Detects an envelope in a `tools/call` result (the raw `result` member). `structuredContent`
/// first, then every `text` content block that parses as a JSON object.
pub fn detect(result: &str) -> Option<Envelope> {
    // Nearly every result is not an envelope: skip the parse unless the key can be in it,
    // literally or behind a `\u` escape (at either level of JSON-in-a-string).
    if !result.contains("requires_confirmation") && !result.contains("\\u") {
        return None;
    }
    let v: Value = serde_json::from_str(result).ok()?;
    if let Some(e) = v.get("structuredContent").and_then(from_object) {
        return Some(e);
    }
    v.get("content")?.as_array()?.iter().find_map(|block| {
        if block.get("type")?.as_str()? != "text" {
            return None;
        }
        let text = block.get("text")?.as_str()?;
        if !text.trim_start().starts_with('{') {
            return None;
        }
        from_object(&serde_json::from_str::<Value>(text).ok()?)
    })
}

/// Whether `v` holds an envelope anywhere: at any depth, and inside strings that are JSON
/// text. For messages that are not `tools/call` results but could still carry an upstream's
/// `action_id` to an agent (task statuses and lists).
pub fn contains(v: &Value) -> bool {
    if from_object(v).is_some() {
        return true;
    }
    match v {
        Value::Object(o) => o.values().any(contains),
        Value::Array(a) => a.iter().any(contains),
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str::<Value>(s).is_ok_and(|v| contains(&v))
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn contains_finds_an_envelope_at_any_depth_and_inside_json_text() {
        let deep = serde_json::json!({"tasks": [{"statusMessage": {"x": {"requires_confirmation": true, "action_id": "a"}}}]});
        assert!(contains(&deep));
        let text = serde_json::json!({"statusMessage": "{\"requires_confirmation\":true,\"action_id\":\"a\"}"});
        assert!(contains(&text));
        let not =
            serde_json::json!({"requires_confirmation": true, "action_id": "", "s": "{not json"});
        assert!(!contains(&not));
    }

    #[test]
    fn structured_content_first_then_text() {
        let r = r#"{"content":[{"type":"text","text":"{\"requires_confirmation\":true,\"action_id\":\"from-text\"}"}],"structuredContent":{"ok":false,"requires_confirmation":true,"action_id":"abc","summary":"Send","expires_in_seconds":60}}"#;
        let e = detect(r).unwrap();
        assert_eq!(e.action_id, "abc");
        assert_eq!(e.summary.as_deref(), Some("Send"));
        assert_eq!(e.expires_in_seconds, Some(60));
        let t = r#"{"content":[{"type":"image","data":"x"},{"type":"text","text":"  {\"requires_confirmation\":true,\"action_id\":\"t1\"}"}]}"#;
        assert_eq!(detect(t).unwrap().action_id, "t1");
        // Escaped keys are still keys: the quick check must not skip them.
        let esc = r#"{"structuredContent":{"\u0072equires_confirmation":true,"action_id":"e1"}}"#;
        assert_eq!(detect(esc).unwrap().action_id, "e1");
        let nested = r#"{"content":[{"type":"text","text":"{\"requires\\u005fconfirmation\":true,\"action_id\":\"e2\"}"}]}"#;
        assert_eq!(detect(nested).unwrap().action_id, "e2");
        assert!(detect(r#"{"content":[{"type":"text","text":"plain"}]}"#).is_none());
        assert!(
            !format!("{e}").contains("abc"),
            "Display never shows the action id"
        );
    }

    #[test]
    fn not_envelopes() {
        for r in [
            r#"{"content":[{"type":"text","text":"hello"}]}"#,
            r#"{"structuredContent":{"requires_confirmation":false,"action_id":"x"}}"#,
            r#"{"structuredContent":{"requires_confirmation":"true","action_id":"x"}}"#,
            r#"{"structuredContent":{"requires_confirmation":true,"action_id":""}}"#,
            r#"{"structuredContent":{"requires_confirmation":true,"action_id":5}}"#,
            r#"{"content":[{"type":"text","text":"{not json"}]}"#,
            "not json",
        ] {
            assert!(detect(r).is_none(), "{r}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = detect(&s);
        }
    }
}
