//! Schema profiles: reshaping a tool's `inputSchema` so an LLM provider accepts it. Pure: returns
//! the new schema plus human-readable notes on what changed; never logs, never fails.
//!
//! Profiles (`schema_profile = "passthrough" | "anthropic" | "openai"`):
//!
//! - **`passthrough`**: the schema is returned unchanged, with no notes.
//! - **`anthropic`** and **`openai`** both apply these rules to the schema's root:
//!   - Top-level `anyOf` / `oneOf` / `allOf` are merged into one object schema. Properties are the
//!     union of the root's own and every variant's (nested combinators inside a variant are merged
//!     the same way, and a variant that is a local `$ref` such as `#/$defs/Cat` is resolved).
//!     `required` is the root's own required keys, plus every `allOf` member's, plus the keys that
//!     *every* `anyOf`/`oneOf` variant requires (the intersection). No property of any variant is
//!     dropped. A variant that cannot describe an arguments object (`"type": "string"`, `false`)
//!     is ignored, with a note.
//!   - When the root and/or several variants define the same property differently, the property
//!     is advertised as `{"anyOf": [...]}` of its distinct definitions, in order of first
//!     appearance (root first, then `$ref`, `allOf`, `anyOf`, `oneOf`), and a note says so. This
//!     may accept more than the upstream does; the upstream still validates every call.
//!   - Keywords of merged variants other than `type`, `properties`, `required` and the
//!     combinators (e.g. a variant's `description`) are not carried over (noted).
//!   - A top-level `$ref` is inlined the same way; `$defs` / `definitions` stay at the root so
//!     nested references keep resolving.
//!   - The root is forced to `"type": "object"` (noted when it said something else), gets
//!     `"properties": {}` when it has none, and loses `$schema`.
//!   - A required key with no definition gets an empty (any-value) definition, so that `required`
//!     is always a subset of `properties` (noted).
//!   - Boolean schemas, a missing schema (`null`) and non-object garbage become
//!     `{"type": "object", "properties": {}}` (noted).
//!   - Everything else at the root (`additionalProperties`, `description`, `$defs`, …) is kept
//!     as given, in its original order; an already-valid schema comes back identical.
//! - **`anthropic`** has no further rules. The Messages API rejects a tool whose `input_schema`
//!   is not `"type": "object"` or has `oneOf`, `allOf` or `anyOf` at the top level ("input_schema
//!   does not support oneOf, allOf, or anyOf at the top level"); nested schemas are not restricted.
//!   Sources: Anthropic tool-use docs (<https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/overview>:
//!   `input_schema` is a JSON Schema object of type `object`); the API's error text as reported in
//!   <https://github.com/anthropics/claude-code/issues/5973> and
//!   <https://github.com/MemPalace/mempalace/issues/1711>.
//! - **`openai`** (non-strict function calling) additionally:
//!   - removes top-level `enum`, `const` and `not` (noted). The API rejects function parameters
//!     that do not have `type: "object"` or that have `oneOf`/`anyOf`/`allOf`/`enum`/`const`/`not`
//!     at the top level ("schema must have type 'object' and not have
//!     'oneOf'/'anyOf'/'allOf'/'enum'/'not' at the top level", as reported in
//!     <https://github.com/imagekit-developer/imagekit-nodejs/issues/150> and
//!     <https://github.com/goruck/home-generative-agent/pull/545>); the Structured Outputs guide
//!     (<https://platform.openai.com/docs/guides/structured-outputs>, "Root objects must not be
//!     `anyOf` and must be an object") states the same for strict mode;
//!   - adds `"properties": {}` to every nested schema whose `type` is `object` and that has no
//!     `properties` (the API answers "object schema missing properties" otherwise:
//!     <https://github.com/openai/openai-agents-python/pull/454>,
//!     <https://github.com/spring-projects/spring-ai/issues/4776>). This never changes which
//!     values are valid;
//!   - keeps `additionalProperties` as given and does not force every property into `required`:
//!     those are strict-mode (`"strict": true`) requirements, and forcing them would change what
//!     the tool accepts.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

pub use crate::config::{SchemaProfile as Profile, UnknownProfile};

/// Combinators merged away at the root by every non-passthrough profile.
const COMBINATORS: [&str; 3] = ["allOf", "anyOf", "oneOf"];
/// Root keywords the OpenAI function-calling validator rejects (besides the combinators).
const OPENAI_ROOT_FORBIDDEN: [&str; 3] = ["enum", "const", "not"];
/// Keywords of a variant that merging consumes; any other keyword of a variant is not kept.
const CONSUMED: [&str; 6] = ["type", "properties", "required", "allOf", "anyOf", "oneOf"];
/// Bounds on the work spent on one schema: `$ref`s make a DAG whose expansion can be exponential.
const MAX_VISITS: usize = 1024;
const MAX_DEPTH: usize = 32;
/// Bound on recursion through nested schemas (a `Value` built in code has no parser depth limit).
const MAX_WALK_DEPTH: usize = 64;

fn empty_object_schema() -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String("object".into()));
    m.insert("properties".into(), Value::Object(Map::new()));
    Value::Object(m)
}

/// Returns the normalised input schema and human-readable notes on what was changed/resolved
/// (e.g. a conflicting property definition resolved deterministically).
pub fn normalize(schema: &Value, profile: Profile) -> (Value, Vec<String>) {
    if profile == Profile::Passthrough {
        return (schema.clone(), Vec::new());
    }
    let replaced = |why: &str| {
        (
            empty_object_schema(),
            vec![format!("{why}; advertised as an empty object schema")],
        )
    };
    match schema {
        Value::Object(_) => {}
        Value::Null => return replaced("the tool has no input schema"),
        Value::Bool(true) => return replaced("the input schema is `true` (any arguments)"),
        Value::Bool(false) => {
            return replaced("the input schema is `false` (no arguments can be valid)")
        }
        other => {
            return replaced(&format!(
                "the input schema is not a JSON object (found {})",
                kind(other)
            ))
        }
    }

    // OpenAI's nested rule is applied first so that definitions compared while merging are
    // already in their final shape (keeps the result stable under a second normalisation).
    let doc: Cow<'_, Value> = if profile == Profile::OpenAi {
        let mut owned = schema.clone();
        ensure_nested_properties(&mut owned, 0);
        Cow::Owned(owned)
    } else {
        Cow::Borrowed(schema)
    };
    let Value::Object(root) = doc.as_ref() else {
        // Unreachable: checked above, and `ensure_nested_properties` keeps an object an object.
        return (empty_object_schema(), Vec::new());
    };

    let mut fl = Flattener::new(doc.as_ref());
    let flat = fl.flatten(doc.as_ref(), 0, true).unwrap_or_default();
    let mut notes = Vec::new();

    if let Some(Value::String(r)) = root.get("$ref") {
        notes.push(format!("inlined the top-level $ref `{r}`"));
    }
    for kw in COMBINATORS {
        if let Some(v) = root.get(kw) {
            let n = v.as_array().map_or(0, Vec::len);
            notes.push(if kw == "allOf" {
                format!(
                    "merged top-level allOf ({n} members) into one object schema: properties and \
                     required are the union of the members'"
                )
            } else {
                format!(
                    "merged top-level {kw} ({n} variants) into one object schema: properties are \
                     the union of the variants', required are the keys every variant requires"
                )
            });
        }
    }
    notes.append(&mut fl.notes);
    if !fl.dropped_keywords.is_empty() {
        let list: Vec<&str> = fl.dropped_keywords.iter().map(String::as_str).collect();
        notes.push(format!(
            "keywords of merged variants not carried over: {}",
            list.join(", ")
        ));
    }

    let (properties, required) = flat.finish(&mut notes);

    let mut out = Map::new();
    if !root.contains_key("type") {
        out.insert("type".into(), Value::String("object".into()));
    }
    let mut placed_properties = false;
    let mut placed_required = false;
    for (k, v) in root {
        match k.as_str() {
            "type" => {
                if v.as_str() != Some("object") {
                    notes.push(format!("root type {v} replaced by \"object\""));
                }
                out.insert(k.clone(), Value::String("object".into()));
            }
            "properties" => {
                out.insert(k.clone(), Value::Object(properties.clone()));
                placed_properties = true;
            }
            "required" => {
                out.insert(k.clone(), required_array(&required));
                placed_required = true;
            }
            "$schema" | "$ref" | "allOf" | "anyOf" | "oneOf" => {}
            kw if profile == Profile::OpenAi && OPENAI_ROOT_FORBIDDEN.contains(&kw) => {
                notes.push(format!(
                    "removed top-level `{kw}` (OpenAI rejects it at the root of function parameters)"
                ));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !placed_properties {
        out.insert("properties".into(), Value::Object(properties));
    }
    if !placed_required && !required.is_empty() {
        out.insert("required".into(), required_array(&required));
    }
    (Value::Object(out), dedup(notes))
}

fn required_array(required: &[String]) -> Value {
    Value::Array(required.iter().cloned().map(Value::String).collect())
}

fn dedup(notes: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    notes
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// False when the schema's `type` rules out an object (`"string"`, `["array", "null"]`, …).
/// A missing or malformed `type` rules out nothing.
fn admits_object(m: &Map<String, Value>) -> bool {
    match m.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t.as_str() == Some("object")),
        _ => true,
    }
}

/// True when the schema explicitly says it is an object.
fn declares_object(m: &Map<String, Value>) -> bool {
    match m.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t.as_str() == Some("object")),
        _ => false,
    }
}

/// OpenAI: every nested object schema gets `"properties": {}` if it has none.
fn ensure_nested_properties(v: &mut Value, depth: usize) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    let Value::Object(m) = v else { return };
    if declares_object(m) && !m.contains_key("properties") {
        m.insert("properties".into(), Value::Object(Map::new()));
    }
    for (k, child) in m.iter_mut() {
        match k.as_str() {
            // Maps from names to schemas.
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(children) = child {
                    for c in children.values_mut() {
                        ensure_nested_properties(c, depth + 1);
                    }
                }
            }
            // Arrays of schemas.
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Value::Array(children) = child {
                    for c in children {
                        ensure_nested_properties(c, depth + 1);
                    }
                }
            }
            // One schema (`items` may also be an array of schemas in older drafts).
            "items"
            | "additionalItems"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedProperties"
            | "unevaluatedItems" => match child {
                Value::Array(children) => {
                    for c in children {
                        ensure_nested_properties(c, depth + 1);
                    }
                }
                other => ensure_nested_properties(other, depth + 1),
            },
            _ => {}
        }
    }
}

/// What a schema says about an arguments object: its properties (each with its distinct
/// definitions, in order of first appearance) and its required keys.
#[derive(Default)]
struct Flat {
    order: Vec<String>,
    defs: HashMap<String, Vec<Value>>,
    required: Vec<String>,
}

impl Flat {
    fn add_def(&mut self, name: &str, def: &Value) {
        match self.defs.get_mut(name) {
            Some(defs) => {
                if !defs.contains(def) {
                    defs.push(def.clone());
                }
            }
            None => {
                self.order.push(name.to_string());
                self.defs.insert(name.to_string(), vec![def.clone()]);
            }
        }
    }

    fn add_required(&mut self, name: &str) {
        if !self.required.iter().any(|r| r == name) {
            self.required.push(name.to_string());
        }
    }

    fn add_properties_of(&mut self, other: &Flat) {
        for name in &other.order {
            if let Some(defs) = other.defs.get(name) {
                for d in defs {
                    self.add_def(name, d);
                }
            }
        }
    }

    /// `allOf` / `$ref`: every constraint applies, so both properties and required add up.
    fn absorb_all(&mut self, other: &Flat) {
        self.add_properties_of(other);
        for r in &other.required {
            self.add_required(r);
        }
    }

    /// `anyOf` / `oneOf`: properties add up; only the keys every alternative requires are required.
    fn absorb_any(&mut self, alts: &[Flat]) {
        for alt in alts {
            self.add_properties_of(alt);
        }
        if let Some((first, rest)) = alts.split_first() {
            for r in &first.required {
                if rest.iter().all(|a| a.required.contains(r)) {
                    self.add_required(r);
                }
            }
        }
    }

    /// The final `properties` map and `required` list (a subset of the properties' keys).
    fn finish(mut self, notes: &mut Vec<String>) -> (Map<String, Value>, Vec<String>) {
        for r in self.required.clone() {
            if !self.defs.contains_key(&r) {
                notes.push(format!(
                    "required parameter `{r}` has no definition; advertised with an empty \
                     (any value) schema"
                ));
                self.add_def(&r, &Value::Object(Map::new()));
            }
        }
        let mut properties = Map::new();
        for name in self.order {
            let mut defs = self.defs.remove(&name).unwrap_or_default();
            let def = if defs.len() == 1 {
                defs.pop().unwrap_or_default()
            } else {
                notes.push(format!(
                    "property `{name}` is defined differently by the merged schemas; advertised \
                     as anyOf of its {} distinct definitions",
                    defs.len()
                ));
                let mut m = Map::new();
                m.insert("anyOf".into(), Value::Array(defs));
                Value::Object(m)
            };
            properties.insert(name, def);
        }
        (properties, self.required)
    }
}

struct Flattener<'a> {
    doc: &'a Value,
    visits_left: usize,
    ref_stack: Vec<String>,
    notes: Vec<String>,
    dropped_keywords: BTreeSet<String>,
}

impl<'a> Flattener<'a> {
    fn new(doc: &'a Value) -> Self {
        Self {
            doc,
            visits_left: MAX_VISITS,
            ref_stack: Vec::new(),
            notes: Vec::new(),
            dropped_keywords: BTreeSet::new(),
        }
    }

    /// `None`: no arguments object can match `schema`. The root's own `type` is ignored (it is
    /// forced to `object` anyway), and so are its other keywords (they are kept as they are).
    fn flatten(&mut self, schema: &'a Value, depth: usize, is_root: bool) -> Option<Flat> {
        let m = match schema {
            Value::Bool(true) => return Some(Flat::default()),
            Value::Bool(false) => return None,
            Value::Object(m) => m,
            other => {
                self.notes.push(format!(
                    "a variant that is not a JSON schema ({}) was ignored",
                    kind(other)
                ));
                return None;
            }
        };
        if !is_root && !admits_object(m) {
            return None;
        }
        if self.visits_left == 0 || depth > MAX_DEPTH {
            self.notes.push(
                "the schema is too deeply nested or too large to merge completely; some variants \
                 were not expanded"
                    .into(),
            );
            return Some(Flat::default());
        }
        self.visits_left -= 1;

        let mut flat = Flat::default();
        match m.get("properties") {
            Some(Value::Object(props)) => {
                for (name, def) in props {
                    flat.add_def(name, def);
                }
            }
            Some(other) => self.notes.push(format!(
                "`properties` is {}, not an object; ignored",
                kind(other)
            )),
            None => {}
        }
        match m.get("required") {
            Some(Value::Array(names)) => {
                for n in names {
                    match n.as_str() {
                        Some(n) => flat.add_required(n),
                        None => self.notes.push(format!(
                            "a non-string entry of `required` ({n}) was ignored"
                        )),
                    }
                }
            }
            Some(other) => self.notes.push(format!(
                "`required` is {}, not an array; ignored",
                kind(other)
            )),
            None => {}
        }
        if !is_root {
            for k in m.keys() {
                if !CONSUMED.contains(&k.as_str()) && k != "$ref" {
                    self.dropped_keywords.insert(k.clone());
                }
            }
        }

        match m.get("$ref") {
            Some(Value::String(r)) => self.follow_ref(r, depth, &mut flat),
            Some(other) => self
                .notes
                .push(format!("`$ref` is {}, not a string; ignored", kind(other))),
            None => {}
        }
        if let Some(members) = m.get("allOf") {
            for member in self.items_of("allOf", members) {
                match self.flatten(member, depth + 1, false) {
                    Some(f) => flat.absorb_all(&f),
                    None => self.notes.push(
                        "an allOf member that cannot describe an arguments object was ignored"
                            .into(),
                    ),
                }
            }
        }
        for kw in ["anyOf", "oneOf"] {
            let Some(variants) = m.get(kw) else { continue };
            let mut alts = Vec::new();
            for (i, v) in self.items_of(kw, variants).iter().enumerate() {
                match self.flatten(v, depth + 1, false) {
                    Some(f) => alts.push(f),
                    None => self.notes.push(format!(
                        "{kw} variant {} cannot describe an arguments object; ignored",
                        i + 1
                    )),
                }
            }
            flat.absorb_any(&alts);
        }
        Some(flat)
    }

    fn items_of(&mut self, kw: &str, v: &'a Value) -> Vec<&'a Value> {
        match v {
            Value::Array(items) => items.iter().collect(),
            other => {
                self.notes
                    .push(format!("`{kw}` is {}, not an array; ignored", kind(other)));
                Vec::new()
            }
        }
    }

    /// Local references only (`#`, `#/$defs/Name`, …): a remote schema is never fetched.
    fn follow_ref(&mut self, r: &str, depth: usize, flat: &mut Flat) {
        if self.ref_stack.iter().any(|s| s == r) {
            self.notes
                .push(format!("recursive $ref `{r}` was not expanded further"));
            return;
        }
        let doc = self.doc;
        let target = match r.strip_prefix('#') {
            Some("") => Some(doc),
            Some(pointer) => doc.pointer(pointer),
            None => None,
        };
        let Some(target) = target else {
            self.notes.push(format!(
                "could not resolve $ref `{r}`; the properties it defines are not advertised"
            ));
            return;
        };
        self.ref_stack.push(r.to_string());
        let sub = self.flatten(target, depth + 1, false);
        self.ref_stack.pop();
        match sub {
            Some(f) => flat.absorb_all(&f),
            None => self.notes.push(format!(
                "$ref `{r}` cannot describe an arguments object; ignored"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const MERGING: [Profile; 2] = [Profile::Anthropic, Profile::OpenAi];

    fn norm(v: Value, p: Profile) -> Value {
        normalize(&v, p).0
    }

    #[test]
    fn profile_parses_and_displays() {
        for p in [Profile::Passthrough, Profile::Anthropic, Profile::OpenAi] {
            assert_eq!(p.as_str().parse::<Profile>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        let err = "OpenAI".parse::<Profile>().unwrap_err();
        assert_eq!(err, UnknownProfile("OpenAI".into()));
        assert!(err.to_string().contains("passthrough, anthropic, openai"));
    }

    #[test]
    fn passthrough_returns_anything_unchanged() {
        for v in [
            json!({"$schema": "x", "anyOf": [{"properties": {"a": {}}}]}),
            json!(false),
            json!(null),
            json!([1, 2]),
        ] {
            assert_eq!(normalize(&v, Profile::Passthrough), (v.clone(), vec![]));
        }
    }

    #[test]
    fn valid_schema_is_unchanged_with_no_notes_and_same_key_order() {
        let v = json!({
            "type": "object",
            "description": "d",
            "properties": {"z": {"type": "string"}, "a": {"type": "integer"}},
            "required": ["z"],
            "additionalProperties": false
        });
        for p in MERGING {
            let (out, notes) = normalize(&v, p);
            assert!(notes.is_empty(), "{notes:?}");
            assert_eq!(
                serde_json::to_string(&out).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
        }
    }

    #[test]
    fn anyof_is_merged_with_union_of_properties_and_intersection_of_required() {
        let v = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "required": ["mode"],
            "properties": {"mode": {"type": "string"}},
            "anyOf": [
                {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a", "b"]},
                {"properties": {"a": {"type": "string"}, "c": {"type": "integer"}}, "required": ["c", "a"]}
            ]
        });
        for p in MERGING {
            let (out, notes) = normalize(&v, p);
            assert_eq!(
                out,
                json!({
                    "type": "object",
                    "required": ["mode", "a"],
                    "properties": {
                        "mode": {"type": "string"},
                        "a": {"type": "string"},
                        "b": {"type": "string"},
                        "c": {"type": "integer"}
                    }
                })
            );
            assert!(notes
                .iter()
                .any(|n| n.contains("merged top-level anyOf (2 variants)")));
        }
    }

    #[test]
    fn oneof_is_merged_like_anyof() {
        let v = json!({"oneOf": [
            {"properties": {"x": {"type": "string"}}, "required": ["x"]},
            {"properties": {"y": {"type": "string"}}, "required": ["y"]}
        ]});
        let out = norm(v, Profile::Anthropic);
        assert_eq!(
            out,
            json!({"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string"}}})
        );
    }

    #[test]
    fn allof_is_merged_with_union_of_required() {
        let v = json!({"type": "object", "allOf": [
            {"properties": {"x": {"type": "string"}}, "required": ["x"]},
            {"properties": {"y": {"type": "string"}}, "required": ["y"]}
        ]});
        let out = norm(v, Profile::OpenAi);
        assert_eq!(out["required"], json!(["x", "y"]));
        assert!(out.get("allOf").is_none());
    }

    #[test]
    fn conflicting_definitions_become_anyof_of_distinct_definitions_in_order() {
        let v = json!({"anyOf": [
            {"properties": {"p": {"type": "string"}}},
            {"properties": {"p": {"type": "integer"}}},
            {"properties": {"p": {"type": "string"}}}
        ]});
        let (out, notes) = normalize(&v, Profile::Anthropic);
        assert_eq!(
            out["properties"]["p"],
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
        assert!(notes
            .iter()
            .any(|n| n.contains("property `p`") && n.contains("2 distinct definitions")));
    }

    #[test]
    fn root_definition_comes_first_in_a_conflict() {
        let v = json!({
            "properties": {"kind": {"enum": ["a", "b"]}},
            "oneOf": [{"properties": {"kind": {"const": "a"}}}, {"properties": {"kind": {"const": "b"}}}]
        });
        let out = norm(v, Profile::OpenAi);
        assert_eq!(
            out["properties"]["kind"]["anyOf"],
            json!([{"enum": ["a", "b"]}, {"const": "a"}, {"const": "b"}])
        );
    }

    #[test]
    fn anyof_of_required_only_branches_keeps_root_required() {
        // The "at least one of" idiom that the Anthropic API rejects at the root.
        let v = json!({
            "type": "object",
            "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "body": {"type": "string"}},
            "required": ["id"],
            "anyOf": [{"required": ["title"]}, {"required": ["body"]}]
        });
        let out = norm(v, Profile::Anthropic);
        assert_eq!(out["required"], json!(["id"]));
        assert_eq!(out["properties"].as_object().unwrap().len(), 3);
        assert!(out.get("anyOf").is_none());
    }

    #[test]
    fn ref_variants_are_resolved_against_root_defs() {
        // The shape pydantic generates for a discriminated union.
        let v = json!({
            "$defs": {
                "Cat": {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}}, "required": ["kind", "lives"]},
                "Dog": {"type": "object", "properties": {"kind": {"const": "dog"}, "breed": {"type": "string"}}, "required": ["kind"]}
            },
            "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]
        });
        let out = norm(v, Profile::OpenAi);
        let props = out["properties"].as_object().unwrap();
        assert_eq!(
            props.keys().collect::<Vec<_>>(),
            vec!["kind", "lives", "breed"]
        );
        assert_eq!(out["required"], json!(["kind"]));
        assert!(out.get("$defs").is_some(), "$defs stay for nested refs");
    }

    #[test]
    fn top_level_ref_is_inlined() {
        let v = json!({"$ref": "#/definitions/Args", "definitions": {"Args": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}});
        let (out, notes) = normalize(&v, Profile::Anthropic);
        assert_eq!(out["properties"], json!({"q": {"type": "string"}}));
        assert_eq!(out["required"], json!(["q"]));
        assert!(out.get("$ref").is_none());
        assert!(notes.iter().any(|n| n.contains("inlined")));
    }

    #[test]
    fn recursive_and_unresolvable_refs_terminate_with_notes() {
        let v = json!({"anyOf": [{"$ref": "#"}, {"$ref": "#/$defs/missing"}, {"$ref": "https://example.com/s.json"}]});
        let (out, notes) = normalize(&v, Profile::Anthropic);
        assert_eq!(out, json!({"type": "object", "properties": {}}));
        assert!(notes.iter().any(|n| n.contains("recursive $ref `#`")));
        assert!(notes.iter().any(|n| n.contains("#/$defs/missing")));
    }

    #[test]
    fn exponential_ref_fan_out_is_bounded() {
        // Each level refers to the next ten times: 10^20 expansions without a budget.
        let mut defs = Map::new();
        for i in 0..20 {
            let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
            defs.insert(format!("d{i}"), json!({"anyOf": vec![next; 10]}));
        }
        defs.insert("d20".into(), json!({"properties": {"leaf": {}}}));
        let v = json!({"$defs": defs, "anyOf": [{"$ref": "#/$defs/d0"}]});
        let (out, notes) = normalize(&v, Profile::Anthropic);
        assert_eq!(out["type"], "object");
        assert!(notes
            .iter()
            .any(|n| n.contains("too deeply nested or too large")));
    }

    #[test]
    fn nested_combinators_in_variants_are_merged() {
        let v = json!({"anyOf": [
            {"oneOf": [{"properties": {"a": {}}, "required": ["a"]}, {"properties": {"b": {}}, "required": ["a", "b"]}]},
            {"properties": {"c": {}}, "required": ["a", "c"]}
        ]});
        let out = norm(v, Profile::Anthropic);
        assert_eq!(
            out["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        assert_eq!(out["required"], json!(["a"]));
    }

    #[test]
    fn non_object_variants_are_ignored_with_a_note() {
        let v = json!({"anyOf": [{"type": "string"}, {"properties": {"x": {}}, "required": ["x"]}, false]});
        let (out, notes) = normalize(&v, Profile::OpenAi);
        assert_eq!(out["required"], json!(["x"]));
        assert!(notes.iter().any(|n| n.contains("anyOf variant 1")));
        assert!(notes.iter().any(|n| n.contains("anyOf variant 3")));
    }

    #[test]
    fn variant_keywords_that_are_not_kept_are_noted() {
        let v = json!({"anyOf": [{"description": "first", "properties": {"x": {}}, "additionalProperties": false}]});
        let (_, notes) = normalize(&v, Profile::Anthropic);
        assert!(notes
            .iter()
            .any(|n| n.contains("not carried over: additionalProperties, description")));
    }

    #[test]
    fn root_is_forced_to_object_and_schema_stripped() {
        let (out, notes) = normalize(
            &json!({"$schema": "x", "type": "array", "items": {"type": "string"}}),
            Profile::Anthropic,
        );
        assert_eq!(
            out,
            json!({"type": "object", "items": {"type": "string"}, "properties": {}})
        );
        assert!(notes.iter().any(|n| n.contains("root type \"array\"")));

        let (out, notes) = normalize(&json!({"$schema": "x"}), Profile::OpenAi);
        assert_eq!(out, json!({"type": "object", "properties": {}}));
        assert!(notes.is_empty(), "routine fixes are not noted: {notes:?}");
    }

    #[test]
    fn nullable_object_root_becomes_plain_object() {
        let out = norm(
            json!({"type": ["object", "null"], "properties": {}}),
            Profile::OpenAi,
        );
        assert_eq!(out, json!({"type": "object", "properties": {}}));
    }

    #[test]
    fn booleans_null_and_garbage_become_the_empty_object_schema() {
        for v in [
            json!(true),
            json!(false),
            json!(null),
            json!(3),
            json!("s"),
            json!([]),
        ] {
            for p in MERGING {
                let (out, notes) = normalize(&v, p);
                assert_eq!(out, json!({"type": "object", "properties": {}}));
                assert_eq!(notes.len(), 1, "{v}: {notes:?}");
            }
        }
    }

    #[test]
    fn required_without_definition_gets_an_empty_definition() {
        let (out, notes) = normalize(
            &json!({"type": "object", "properties": {}, "required": ["ghost", 7]}),
            Profile::Anthropic,
        );
        assert_eq!(out["properties"], json!({"ghost": {}}));
        assert_eq!(out["required"], json!(["ghost"]));
        assert!(notes
            .iter()
            .any(|n| n.contains("`ghost` has no definition")));
        assert!(notes.iter().any(|n| n.contains("non-string entry")));
    }

    #[test]
    fn malformed_properties_and_required_are_replaced() {
        let (out, notes) = normalize(
            &json!({"type": "object", "properties": [], "required": "x"}),
            Profile::OpenAi,
        );
        assert_eq!(
            out,
            json!({"type": "object", "properties": {}, "required": []})
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn openai_removes_top_level_enum_const_not_and_keeps_additional_properties() {
        let v = json!({
            "type": "object", "properties": {"a": {"type": "string"}},
            "enum": [{"a": "x"}], "const": {"a": "x"}, "not": {"required": ["b"]},
            "additionalProperties": true
        });
        let (out, notes) = normalize(&v, Profile::OpenAi);
        assert_eq!(
            out,
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true})
        );
        assert_eq!(notes.len(), 3);
        // Anthropic has no such rule.
        assert_eq!(norm(v.clone(), Profile::Anthropic), v);
    }

    #[test]
    fn openai_adds_properties_to_nested_objects_only() {
        let v = json!({
            "type": "object",
            "properties": {
                "filter": {"type": "object", "additionalProperties": true},
                "list": {"type": "array", "items": {"type": ["object", "null"]}},
                "either": {"anyOf": [{"type": "object"}, {"type": "string"}]},
                "free": {}
            },
            "$defs": {"D": {"type": "object"}}
        });
        let out = norm(v.clone(), Profile::OpenAi);
        assert_eq!(out["properties"]["filter"]["properties"], json!({}));
        assert_eq!(out["properties"]["list"]["items"]["properties"], json!({}));
        assert_eq!(
            out["properties"]["either"]["anyOf"][0]["properties"],
            json!({})
        );
        assert!(out["properties"]["either"]["anyOf"][1]
            .get("properties")
            .is_none());
        assert_eq!(out["properties"]["free"], json!({}));
        assert_eq!(out["$defs"]["D"]["properties"], json!({}));
        assert_eq!(norm(v.clone(), Profile::Anthropic), v);
    }

    // ---- property tests ----

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g"]).prop_map(String::from)
    }

    /// A property's schema: leaves, nested objects, arrays, nested unions.
    fn prop_schema() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!({"type": "string"})),
            Just(json!({"type": "integer"})),
            Just(json!({"type": "object"})),
            Just(json!(true)),
            Just(json!({})),
            any::<u8>().prop_map(|n| json!({"type": "number", "maximum": n})),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                prop::collection::btree_map(name(), inner.clone(), 0..3)
                    .prop_map(|m| json!({"type": "object", "properties": m})),
                inner
                    .clone()
                    .prop_map(|i| json!({"type": "array", "items": i})),
                prop::collection::vec(inner, 1..3).prop_map(|v| json!({"anyOf": v})),
            ]
        })
    }

    /// An object schema, possibly with nested `anyOf`/`oneOf`/`allOf` variants of its own.
    fn object_schema() -> BoxedStrategy<Value> {
        let base = (
            prop::option::of(prop::sample::select(vec![
                json!("object"),
                json!(["object", "null"]),
            ])),
            prop::option::of(prop::collection::btree_map(name(), prop_schema(), 0..4)),
            prop::option::of(prop::collection::vec(name(), 0..3)),
            any::<bool>(),
        )
            .prop_map(|(ty, props, req, description)| {
                let mut m = Map::new();
                if let Some(t) = ty {
                    m.insert("type".into(), t);
                }
                if let Some(p) = props {
                    m.insert("properties".into(), json!(p));
                }
                if let Some(r) = req {
                    m.insert("required".into(), json!(r));
                }
                if description {
                    m.insert("description".into(), json!("variant"));
                }
                Value::Object(m)
            });
        base.prop_recursive(3, 24, 3, |inner| {
            let variant = prop_oneof![
                6 => inner,
                1 => Just(json!(true)),
                1 => Just(json!({"type": "string"})),
            ];
            (
                inner_base(),
                prop::option::of(prop::collection::vec(variant.clone(), 1..4)),
                prop::option::of(prop::collection::vec(variant.clone(), 1..4)),
                prop::option::of(prop::collection::vec(variant, 1..3)),
            )
                .prop_map(|(mut base, any_of, one_of, all_of)| {
                    if let Value::Object(m) = &mut base {
                        for (kw, vs) in [("anyOf", any_of), ("oneOf", one_of), ("allOf", all_of)] {
                            if let Some(vs) = vs {
                                m.insert(kw.into(), Value::Array(vs));
                            }
                        }
                    }
                    base
                })
                .boxed()
        })
        .boxed()
    }

    fn inner_base() -> impl Strategy<Value = Value> {
        (
            prop::option::of(prop::collection::btree_map(name(), prop_schema(), 0..3)),
            prop::option::of(prop::collection::vec(name(), 0..3)),
        )
            .prop_map(|(props, req)| {
                let mut m = Map::new();
                if let Some(p) = props {
                    m.insert("properties".into(), json!(p));
                }
                if let Some(r) = req {
                    m.insert("required".into(), json!(r));
                }
                Value::Object(m)
            })
    }

    /// A whole input schema: mostly objects (with root-level oddities), sometimes garbage.
    fn any_schema() -> impl Strategy<Value = Value> {
        let root = (
            object_schema(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![
                ("type", json!("array")),
                ("enum", json!([{}])),
                ("not", json!({"required": ["z"]})),
                ("additionalProperties", json!(false)),
                ("const", json!({})),
            ])),
        )
            .prop_map(|(mut v, dollar_schema, extra)| {
                if let Value::Object(m) = &mut v {
                    if dollar_schema {
                        m.insert(
                            "$schema".into(),
                            json!("https://json-schema.org/draft-07/schema"),
                        );
                    }
                    if let Some((k, x)) = extra {
                        m.insert(k.into(), x);
                    }
                }
                v
            });
        prop_oneof![
            12 => root,
            1 => prop::sample::select(vec![json!(true), json!(false), json!(null), json!(1), json!("x"), json!([{}])]),
        ]
    }

    /// Property names an input defines: the root's own and, recursively, every variant's that
    /// can describe an object.
    fn defined_names(v: &Value, is_root: bool, out: &mut BTreeSet<String>) {
        let Value::Object(m) = v else { return };
        if !is_root && !admits_object(m) {
            return;
        }
        if let Some(Value::Object(p)) = m.get("properties") {
            out.extend(p.keys().cloned());
        }
        for kw in COMBINATORS {
            if let Some(Value::Array(vs)) = m.get(kw) {
                for variant in vs {
                    defined_names(variant, false, out);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn normalized_schemas_are_provider_valid_and_lose_no_property(v in any_schema()) {
            for p in MERGING {
                let (out, _notes) = normalize(&v, p);
                let m = out.as_object().expect("root is an object");
                prop_assert_eq!(m.get("type"), Some(&json!("object")));
                for kw in ["anyOf", "oneOf", "allOf", "$schema"] {
                    prop_assert!(!m.contains_key(kw), "{} left at the root", kw);
                }
                if p == Profile::OpenAi {
                    for kw in OPENAI_ROOT_FORBIDDEN {
                        prop_assert!(!m.contains_key(kw), "{} left at the root", kw);
                    }
                }
                let props = m.get("properties").and_then(Value::as_object).expect("properties object");
                let mut names = BTreeSet::new();
                defined_names(&v, true, &mut names);
                for n in &names {
                    prop_assert!(props.contains_key(n), "property {} dropped", n);
                }
                if let Some(req) = m.get("required") {
                    for r in req.as_array().expect("required is an array") {
                        let r = r.as_str().expect("required entries are strings");
                        prop_assert!(props.contains_key(r), "required {} not in properties", r);
                    }
                }
            }
        }

        #[test]
        fn normalize_is_idempotent(v in any_schema()) {
            for p in [Profile::Passthrough, Profile::Anthropic, Profile::OpenAi] {
                let (once, _) = normalize(&v, p);
                let (twice, _) = normalize(&once, p);
                prop_assert_eq!(&twice, &once);
            }
        }

        #[test]
        fn passthrough_is_identity(v in any_schema()) {
            prop_assert_eq!(normalize(&v, Profile::Passthrough), (v.clone(), vec![]));
        }
    }
}
