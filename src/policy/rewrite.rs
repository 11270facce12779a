//! Operator rewrites of one tool: what an agent sees of its definition (description, title,
//! annotations, parameters) and what the proxy forwards of the agent's arguments (pinned values
//! injected, hidden and pinned parameters refused). Pure: no I/O; warnings come back as data.
//!
//! Renaming is not done here: the caller decides the exposed name (see [`super::naming`]).

use serde_json::{Map, Value};

use super::schema::{self, Profile};

pub use crate::config::ToolRewrite;
pub use crate::mcp::NEVER_ADVERTISED;

/// How deep parameter removal follows top-level `anyOf`/`oneOf`/`allOf` variants.
pub(crate) const MAX_STRIP_DEPTH: usize = 8;

/// Rewrites a tool definition (the JSON object from an upstream's tools/list): description/title/
/// annotations overrides; pinned and hidden parameters and NEVER_ADVERTISED removed from
/// inputSchema.properties and inputSchema.required; then the schema profile applied to inputSchema.
/// `name` is NOT changed here (the caller sets the exposed name). Unknown fields of the tool are kept.
/// Errors (as a String message) when a hidden parameter is required by the upstream schema (hiding it would make every call invalid).
///
/// Parameters are removed from the root and from the root's `anyOf`/`oneOf`/`allOf` variants
/// before the profile runs, and again from the root after it (a profile inlines `$ref`
/// variants). With the passthrough profile a parameter defined only behind a `$ref` stays
/// advertised; it is still pinned or refused by [`apply_arguments`].
pub fn rewrite_tool(
    tool: serde_json::Value,
    rw: &ToolRewrite,
    profile: super::schema::Profile,
) -> Result<(serde_json::Value, Vec<String>), String> {
    let Value::Object(mut out) = tool else {
        return Err("the tool definition is not a JSON object".into());
    };
    let tool_name = out
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string();
    let mut notes = Vec::new();

    if let Some(d) = &rw.description {
        out.insert("description".into(), Value::String(d.clone()));
    }
    if let Some(t) = &rw.title {
        out.insert("title".into(), Value::String(t.clone()));
    }
    if let Some(overrides) = &rw.annotations {
        let mut merged = match out.get("annotations") {
            Some(Value::Object(upstream)) => upstream.clone(),
            _ => Map::new(),
        };
        for (k, v) in overrides {
            merged.insert(k.clone(), v.clone());
        }
        out.insert("annotations".into(), Value::Object(merged));
    }

    let removed: Vec<&str> = rw
        .pin
        .keys()
        .map(String::as_str)
        .chain(rw.hide.iter().map(String::as_str))
        .chain(NEVER_ADVERTISED.iter().copied())
        .collect();

    match out.get_mut("inputSchema") {
        // Only pins and hidden parameters need the upstream's effective schema (to refuse
        // hiding a required parameter and to note undeclared ones): a normalisation saved for
        // every other tool.
        Some(upstream) if !rw.pin.is_empty() || !rw.hide.is_empty() => {
            // What the upstream declares and requires, combinators and `$ref`s included.
            let (effective, _) = schema::normalize(upstream, Profile::Anthropic);
            let declared = effective.get("properties").and_then(Value::as_object);
            let required: Vec<&str> = effective
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();

            let blocked: Vec<&str> = rw
                .hide
                .iter()
                .map(String::as_str)
                .filter(|h| required.contains(h))
                .collect();
            if !blocked.is_empty() {
                return Err(format!(
                    "tool `{tool_name}`: cannot hide {}: required by the upstream schema, so \
                     every call would be invalid (pin a value instead)",
                    blocked
                        .iter()
                        .map(|b| format!("`{b}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let is_declared = |p: &str| declared.is_some_and(|d| d.contains_key(p));
            for p in rw.pin.keys().filter(|p| !is_declared(p)) {
                notes.push(format!(
                    "tool `{tool_name}`: pinned parameter `{p}` is not declared by the upstream \
                     schema; it is still sent on every call"
                ));
            }
            for h in rw.hide.iter().filter(|h| !is_declared(h)) {
                notes.push(format!(
                    "tool `{tool_name}`: hidden parameter `{h}` is not declared by the upstream \
                     schema"
                ));
            }

            let normalized =
                strip_and_normalize(upstream, &removed, profile, &tool_name, &mut notes);
            *upstream = normalized;
        }
        Some(upstream) => {
            let normalized =
                strip_and_normalize(upstream, &removed, profile, &tool_name, &mut notes);
            *upstream = normalized;
        }
        None if profile != Profile::Passthrough => {
            let (normalized, profile_notes) = schema::normalize(&Value::Null, profile);
            notes.extend(
                profile_notes
                    .into_iter()
                    .map(|n| format!("tool `{tool_name}`: {n}")),
            );
            out.insert("inputSchema".into(), normalized);
        }
        None => {}
    }
    Ok((Value::Object(out), notes))
}

/// [`rewrite_tool`] on a tool's bytes, with `name` set to `exposed`: the compact JSON of the
/// result, and the notes. (The general path: `super::fast` answers most tools without a tree.)
pub fn rewrite_tool_bytes(
    raw: &[u8],
    rw: &ToolRewrite,
    profile: Profile,
    exposed: &str,
) -> Result<(Vec<u8>, Vec<String>), String> {
    let tool: Value = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    let (mut out, notes) = rewrite_tool(tool, rw, profile)?;
    if let Some(obj) = out.as_object_mut() {
        obj.insert("name".into(), Value::String(exposed.to_string()));
    }
    let bytes = serde_json::to_vec(&out).map_err(|e| e.to_string())?;
    Ok((bytes, notes))
}

/// The input schema without the removed parameters, under the profile (taken out of `schema`,
/// which is left `null`).
fn strip_and_normalize(
    schema: &mut Value,
    removed: &[&str],
    profile: Profile,
    tool_name: &str,
    notes: &mut Vec<String>,
) -> Value {
    let mut stripped = std::mem::take(schema);
    strip_params(&mut stripped, removed, 0);
    let (mut normalized, profile_notes) = schema::normalize(&stripped, profile);
    strip_params(&mut normalized, removed, MAX_STRIP_DEPTH);
    notes.extend(
        profile_notes
            .into_iter()
            .map(|n| format!("tool `{tool_name}`: {n}")),
    );
    normalized
}

/// Removes `names` from a schema's `properties` and `required`, and from those of its
/// `anyOf`/`oneOf`/`allOf` variants (until `depth` reaches [`MAX_STRIP_DEPTH`]).
fn strip_params(schema: &mut Value, names: &[&str], depth: usize) {
    let Value::Object(m) = schema else { return };
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        // `retain` keeps the remaining properties in their advertised order (preserve_order).
        props.retain(|k, _| !names.contains(&k.as_str()));
    }
    if let Some(Value::Array(req)) = m.get_mut("required") {
        req.retain(|r| !r.as_str().is_some_and(|r| names.contains(&r)));
    }
    if depth >= MAX_STRIP_DEPTH {
        return;
    }
    for kw in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(variants)) = m.get_mut(kw) {
            for v in variants {
                strip_params(v, names, depth + 1);
            }
        }
    }
}

/// Why an agent's arguments were refused. The messages are meant for the agent.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ArgError {
    #[error("tool arguments must be a JSON object")]
    NotAnObject,
    #[error("argument `{0}` is set by the operator and cannot be given")]
    Pinned(String),
    #[error("argument `{0}` is not available to this agent")]
    Hidden(String),
}

/// The arguments to forward: the agent's arguments (absent → {}), refused if they set a pinned or
/// hidden parameter; NEVER_ADVERTISED keys are removed silently; pinned values inserted.
///
/// JSON `null` counts as absent. The first offending key, in the agent's order, is reported.
/// A pin on a NEVER_ADVERTISED name is not inserted (that value belongs to the consent flow);
/// a name both pinned and hidden is pinned.
pub fn apply_arguments(
    args: Option<&serde_json::Value>,
    rw: &ToolRewrite,
) -> Result<serde_json::Value, ArgError> {
    let mut out = match args {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ArgError::NotAnObject),
    };
    for k in out.keys() {
        if rw.pin.contains_key(k) {
            return Err(ArgError::Pinned(k.clone()));
        }
        if rw.hide.iter().any(|h| h == k) {
            return Err(ArgError::Hidden(k.clone()));
        }
    }
    out.retain(|k, _| !NEVER_ADVERTISED.contains(&k.as_str()));
    for (k, v) in &rw.pin {
        if !NEVER_ADVERTISED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn tool() -> Value {
        json!({
            "name": "write_file",
            "title": "Write file",
            "description": "Writes a file.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "content": {"type": "string"},
                    "mode": {"type": "string"},
                    "confirmation_token": {"type": "string"}
                },
                "required": ["path", "content", "confirmation_token"]
            },
            "outputSchema": {"type": "object"},
            "annotations": {"destructiveHint": true, "readOnlyHint": false},
            "_meta": {"vendor": 1}
        })
    }

    fn rewrite(rw: &ToolRewrite) -> (Value, Vec<String>) {
        rewrite_tool(tool(), rw, Profile::Passthrough).unwrap()
    }

    #[test]
    fn no_rewrite_only_removes_never_advertised() {
        let (out, notes) = rewrite(&ToolRewrite::default());
        let mut expected = tool();
        expected["inputSchema"]["properties"]
            .as_object_mut()
            .unwrap()
            .remove("confirmation_token");
        expected["inputSchema"]["required"] = json!(["path", "content"]);
        assert_eq!(out, expected);
        assert!(notes.is_empty());
    }

    #[test]
    fn rename_is_not_applied_here() {
        let rw = ToolRewrite {
            rename: Some("save".into()),
            ..Default::default()
        };
        assert_eq!(rewrite(&rw).0["name"], "write_file");
    }

    #[test]
    fn description_and_title_are_overridden_and_unknown_fields_kept() {
        let rw = ToolRewrite {
            description: Some("Saves notes.".into()),
            title: Some("Save".into()),
            ..Default::default()
        };
        let out = rewrite(&rw).0;
        assert_eq!(out["description"], "Saves notes.");
        assert_eq!(out["title"], "Save");
        assert_eq!(out["_meta"], json!({"vendor": 1}));
        assert_eq!(out["outputSchema"], json!({"type": "object"}));
    }

    #[test]
    fn annotations_are_merged_key_by_key() {
        let rw = ToolRewrite {
            annotations: Some(obj(json!({"readOnlyHint": true, "openWorldHint": false}))),
            ..Default::default()
        };
        assert_eq!(
            rewrite(&rw).0["annotations"],
            json!({"destructiveHint": true, "readOnlyHint": true, "openWorldHint": false})
        );
        // No upstream annotations: the overrides alone.
        let mut bare = tool();
        bare.as_object_mut().unwrap().remove("annotations");
        let out = rewrite_tool(bare.clone(), &rw, Profile::Passthrough)
            .unwrap()
            .0;
        assert_eq!(
            out["annotations"],
            json!({"readOnlyHint": true, "openWorldHint": false})
        );
    }

    #[test]
    fn pin_removes_the_parameter_from_properties_and_required() {
        let rw = ToolRewrite {
            pin: obj(json!({"path": "/srv/notes.txt"})),
            ..Default::default()
        };
        let (out, notes) = rewrite(&rw);
        let schema = &out["inputSchema"];
        assert!(schema["properties"].get("path").is_none());
        assert_eq!(schema["required"], json!(["content"]));
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn hide_removes_an_optional_parameter() {
        let rw = ToolRewrite {
            hide: vec!["mode".into()],
            ..Default::default()
        };
        let out = rewrite(&rw).0;
        assert_eq!(
            out["inputSchema"]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec!["path", "content"]
        );
    }

    #[test]
    fn hiding_a_required_parameter_is_an_error() {
        let rw = ToolRewrite {
            hide: vec!["content".into(), "mode".into(), "path".into()],
            ..Default::default()
        };
        let err = rewrite_tool(tool(), &rw, Profile::Passthrough).unwrap_err();
        assert!(err.contains("write_file"), "{err}");
        assert!(err.contains("`content`, `path`"), "{err}");
    }

    #[test]
    fn hiding_a_parameter_every_variant_requires_is_an_error() {
        let t = json!({"name": "t", "inputSchema": {"anyOf": [
            {"properties": {"id": {}, "a": {}}, "required": ["id", "a"]},
            {"properties": {"id": {}, "b": {}}, "required": ["id"]}
        ]}});
        let hide = |p: &str| ToolRewrite {
            hide: vec![p.into()],
            ..Default::default()
        };
        assert!(rewrite_tool(t.clone(), &hide("id"), Profile::Passthrough).is_err());
        // Required by one variant only: the other variant stays usable.
        let out = rewrite_tool(t.clone(), &hide("a"), Profile::Passthrough)
            .unwrap()
            .0;
        assert_eq!(
            out["inputSchema"]["anyOf"][0],
            json!({"properties": {"id": {}}, "required": ["id"]})
        );
    }

    #[test]
    fn confirmation_token_is_never_advertised_under_any_profile() {
        for p in [Profile::Passthrough, Profile::Anthropic, Profile::OpenAi] {
            let out = rewrite_tool(tool(), &ToolRewrite::default(), p).unwrap().0;
            let schema = &out["inputSchema"];
            assert!(schema["properties"].get("confirmation_token").is_none());
            assert!(!schema["required"]
                .as_array()
                .unwrap()
                .contains(&json!("confirmation_token")));
        }
    }

    #[test]
    fn pinned_parameters_are_removed_from_variants_and_refs_before_the_profile() {
        let t = json!({"name": "t", "inputSchema": {
            "$defs": {"B": {"properties": {"root": {}, "y": {}}, "required": ["root"]}},
            "oneOf": [
                {"properties": {"root": {}, "x": {}}, "required": ["root", "x"]},
                {"$ref": "#/$defs/B"}
            ]
        }});
        let rw = ToolRewrite {
            pin: obj(json!({"root": "/srv"})),
            ..Default::default()
        };
        for p in [Profile::Anthropic, Profile::OpenAi] {
            let (out, _) = rewrite_tool(t.clone(), &rw, p).unwrap();
            let schema = &out["inputSchema"];
            assert_eq!(
                schema["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect::<Vec<_>>(),
                vec!["x", "y"]
            );
            assert!(schema.get("required").is_none());
        }
    }

    #[test]
    fn profile_is_applied_to_the_input_schema() {
        let t = json!({"name": "t", "inputSchema": {"$schema": "x", "anyOf": [
            {"properties": {"a": {}}}, {"properties": {"b": {}}}
        ]}});
        let (out, notes) =
            rewrite_tool(t.clone(), &ToolRewrite::default(), Profile::OpenAi).unwrap();
        assert_eq!(
            out["inputSchema"],
            json!({"type": "object", "properties": {"a": {}, "b": {}}})
        );
        assert!(notes.iter().all(|n| n.starts_with("tool `t`: ")));
        assert!(!notes.is_empty());
    }

    #[test]
    fn missing_input_schema_is_filled_only_by_a_profile() {
        let t = json!({"name": "t"});
        let rw = ToolRewrite::default();
        let out = rewrite_tool(t.clone(), &rw, Profile::Passthrough)
            .unwrap()
            .0;
        assert_eq!(out, t);
        let out = rewrite_tool(t.clone(), &rw, Profile::Anthropic).unwrap().0;
        assert_eq!(
            out["inputSchema"],
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn pinning_or_hiding_an_undeclared_parameter_is_noted() {
        let rw = ToolRewrite {
            pin: obj(json!({"tenant": "acme"})),
            hide: vec!["verbose".into()],
            ..Default::default()
        };
        let (_, notes) = rewrite(&rw);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("`tenant`") && notes[0].contains("still sent"));
        assert!(notes[1].contains("`verbose`"));
    }

    #[test]
    fn a_tool_that_is_not_an_object_is_an_error() {
        assert!(rewrite_tool(json!([]), &ToolRewrite::default(), Profile::Passthrough).is_err());
    }

    fn rw_pin_hide() -> ToolRewrite {
        ToolRewrite {
            pin: obj(json!({"path": "/srv/notes.txt", "limit": 10})),
            hide: vec!["mode".into()],
            ..Default::default()
        }
    }

    #[test]
    fn absent_or_null_arguments_become_the_pins() {
        let rw = rw_pin_hide();
        let expected = json!({"path": "/srv/notes.txt", "limit": 10});
        assert_eq!(apply_arguments(None, &rw), Ok(expected.clone()));
        assert_eq!(apply_arguments(Some(&Value::Null), &rw), Ok(expected));
        assert_eq!(
            apply_arguments(None, &ToolRewrite::default()),
            Ok(json!({}))
        );
    }

    #[test]
    fn pins_are_inserted_after_the_agents_arguments() {
        let out = apply_arguments(Some(&json!({"content": "hi"})), &rw_pin_hide()).unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"content":"hi","path":"/srv/notes.txt","limit":10}"#
        );
    }

    #[test]
    fn overriding_a_pinned_argument_is_refused() {
        let err = apply_arguments(Some(&json!({"path": "/etc/passwd"})), &rw_pin_hide());
        assert_eq!(err, Err(ArgError::Pinned("path".into())));
        assert_eq!(
            ArgError::Pinned("path".into()).to_string(),
            "argument `path` is set by the operator and cannot be given"
        );
    }

    #[test]
    fn giving_a_hidden_argument_is_refused() {
        let err = apply_arguments(
            Some(&json!({"content": "x", "mode": "0777"})),
            &rw_pin_hide(),
        );
        assert_eq!(err, Err(ArgError::Hidden("mode".into())));
        assert_eq!(
            ArgError::Hidden("mode".into()).to_string(),
            "argument `mode` is not available to this agent"
        );
    }

    #[test]
    fn the_first_offending_argument_is_reported() {
        let err = apply_arguments(Some(&json!({"mode": "x", "path": "y"})), &rw_pin_hide());
        assert_eq!(err, Err(ArgError::Hidden("mode".into())));
    }

    #[test]
    fn non_object_arguments_are_refused() {
        for v in [json!([]), json!("a"), json!(1), json!(true)] {
            assert_eq!(
                apply_arguments(Some(&v), &ToolRewrite::default()),
                Err(ArgError::NotAnObject)
            );
        }
        assert_eq!(
            ArgError::NotAnObject.to_string(),
            "tool arguments must be a JSON object"
        );
    }

    #[test]
    fn confirmation_token_is_dropped_silently() {
        let out = apply_arguments(
            Some(&json!({"content": "x", "confirmation_token": "forged"})),
            &rw_pin_hide(),
        )
        .unwrap();
        assert!(out.get("confirmation_token").is_none());
        assert_eq!(out["content"], "x");
    }

    #[test]
    fn a_pin_on_a_never_advertised_name_is_not_inserted() {
        let rw = ToolRewrite {
            pin: obj(json!({"confirmation_token": "operator"})),
            ..Default::default()
        };
        assert_eq!(apply_arguments(None, &rw), Ok(json!({})));
    }

    fn arg_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "a",
            "b",
            "c",
            "d",
            "e",
            "f",
            "g",
            "h",
            "confirmation_token",
        ])
        .prop_map(String::from)
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z]{0,6}".prop_map(Value::String),
            Just(json!({"nested": [1, 2]})),
        ]
    }

    /// Pins and hides over disjoint names, never on a NEVER_ADVERTISED name (config rejects it).
    fn rewrite_strategy() -> impl Strategy<Value = ToolRewrite> {
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g", "h"]),
            (0u8..3, json_leaf()),
            0..6,
        )
        .prop_map(|picks| {
            let mut rw = ToolRewrite::default();
            for (name, (role, value)) in picks {
                match role {
                    0 => {
                        rw.pin.insert(name.into(), value);
                    }
                    1 => rw.hide.push(name.into()),
                    _ => {}
                }
            }
            rw
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn forwarded_arguments_carry_every_pin_and_nothing_hidden(
            rw in rewrite_strategy(),
            args in prop::collection::btree_map(arg_name(), json_leaf(), 0..6),
            drop_offending in any::<bool>(),
        ) {
            let mut args: Map<String, Value> = args.into_iter().collect();
            if drop_offending {
                args.retain(|k, _| !rw.pin.contains_key(k) && !rw.hide.contains(k));
            }
            let offending = args.keys().any(|k| rw.pin.contains_key(k) || rw.hide.contains(k));
            let args = Value::Object(args);
            match apply_arguments(Some(&args), &rw) {
                Ok(out) => {
                    prop_assert!(!offending);
                    let out = out.as_object().expect("forwarded arguments are an object");
                    for (k, v) in &rw.pin {
                        prop_assert_eq!(out.get(k), Some(v));
                    }
                    for h in &rw.hide {
                        prop_assert!(!out.contains_key(h));
                    }
                    for n in NEVER_ADVERTISED {
                        prop_assert!(!out.contains_key(*n));
                    }
                    // Everything else the agent sent is forwarded untouched.
                    for (k, v) in args.as_object().expect("object") {
                        if !NEVER_ADVERTISED.contains(&k.as_str()) {
                            prop_assert_eq!(out.get(k), Some(v));
                        }
                    }
                }
                Err(ArgError::Pinned(k)) => prop_assert!(offending && rw.pin.contains_key(&k)),
                Err(ArgError::Hidden(k)) => prop_assert!(offending && rw.hide.contains(&k)),
                Err(ArgError::NotAnObject) => prop_assert!(false, "args were an object"),
            }
        }
    }
}
