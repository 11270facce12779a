//! Tool rewrites without a JSON tree, for the shapes most servers list.
//!
//! [`super::rewrite::rewrite_tool`] decodes a tool into a `serde_json::Value`, rewrites it and
//! serialises it again: general, but ~10 µs per tool (every key and string allocated, every
//! map hashed). Here the same result is written by splicing the tool's own bytes, for tools
//! whose input schema is an object schema with plain `properties` and `required`, optionally
//! merged from `allOf` / `anyOf` / `oneOf` variants of the same plain shape (what zod and
//! pydantic emit). Anything else — `$ref`, nested combinators, a property defined differently by
//! two variants, escaped keys, hiding a required parameter, the OpenAI profile, annotation
//! overrides — returns `None`, and the caller takes the general path. A property test checks that both paths agree wherever this one answers.
//!
//! The output keeps the upstream's bytes for every value it does not change (numbers, escapes
//! and whitespace included); the general path re-serialises them. Both parse to the same JSON,
//! member order included.

use super::rewrite::{ToolRewrite, MAX_STRIP_DEPTH, NEVER_ADVERTISED};
use super::schema::Profile;
use crate::mcp::{
    array_at, array_items, each_item, each_member, plain_members, plain_object_at, push_json_str,
    skip_ws, span_in, ItemKey, KeySet, Members, PLAIN_MEMBERS_MAX,
};

/// A schema object's own `properties` (a plain object) and `required` (an array of strings
/// written without escapes), as raw text checked when read: walked again where they are used
/// rather than collected (a list build reads hundreds of them).
#[derive(Default)]
struct Part<'a> {
    props: &'a str,
    required: &'a str,
}

impl<'a> Part<'a> {
    fn each_prop(&self, f: impl FnMut(&'a str, &'a str) -> Option<()>) -> Option<()> {
        if self.props.is_empty() {
            return Some(());
        }
        each_member(self.props, f)
    }

    /// Each required key (raw string, quotes included, repeats kept).
    fn each_required(&self, f: impl FnMut(&'a str) -> Option<()>) -> Option<()> {
        if self.required.is_empty() {
            return Some(());
        }
        each_item(self.required, f)
    }

    fn requires(&self, key: &str) -> bool {
        self.each_required(|r| (r != key).then_some(())).is_none()
    }
}

/// The plain object at `text[i]` (raw) and the index just past it.
fn properties_at(text: &str, i: usize) -> Option<(&str, usize)> {
    let (plain, end) = plain_object_at(text, i)?;
    plain.then(|| (&text[i..end], end))
}

/// `required` at `text[i]` (raw) if every item is a string without escapes, and the index just
/// past it.
fn required_at(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let end = array_at(text, i, |start| {
        let end = start + 1 + text.get(start + 1..)?.find(['"', '\\'])?;
        (b.get(start) == Some(&b'"') && b.get(end) == Some(&b'"')).then_some(end + 1)
    })?;
    Some((&text[i..end], end))
}

/// A variant of a root combinator, read at `text[i]`: a plain object schema that describes an
/// object (no `type`, or `"object"`), with no `$ref` and no combinators of its own, and
/// plain `properties` and `required`. Its part and the index just past it; `None` for any
/// other value. One pass: `properties` and `required` are read where they are.
fn variant_at(text: &str, i: usize) -> Option<(Part<'_>, usize)> {
    let mut members = Members::at(text, i)?;
    let mut p = Part::default();
    let mut keys = KeySet::default();
    while let Some(k) = members.next_key()? {
        // Plain keys only (as `plain_members` wants them): no escapes, none twice.
        if k.contains('\\') || keys.len() == PLAIN_MEMBERS_MAX || !keys.insert(k) {
            return None;
        }
        match k {
            "\"$ref\"" | "\"allOf\"" | "\"anyOf\"" | "\"oneOf\"" => return None,
            "\"type\"" => {
                if members.skip()? != "\"object\"" {
                    return None;
                }
            }
            "\"properties\"" => {
                let (props, end) = properties_at(text, members.position())?;
                members.past_value(end)?;
                p.props = props;
            }
            "\"required\"" => {
                let (required, end) = required_at(text, members.position())?;
                members.past_value(end)?;
                p.required = required;
            }
            _ => {
                members.skip()?;
            }
        }
    }
    Some((p, members.position()))
}

/// An input schema's root members (raw text, in order) and, when the schema can be merged
/// (plain `properties` and `required`, combinators of plain variants, no `$ref`), its parts:
/// all read in one pass over the schema.
struct Root<'a> {
    members: Vec<(&'a str, &'a str)>,
    parts: Option<Parts<'a>>,
}

#[derive(Default)]
struct Parts<'a> {
    own: Part<'a>,
    /// `allOf`, `anyOf`, `oneOf`.
    combinators: [Option<Vec<Part<'a>>>; 3],
}

/// `None` when the schema is not a plain object (escaped or repeated keys, too many).
fn read_root(text: &str) -> Option<Root<'_>> {
    let b = text.as_bytes();
    let mut members = Members::at(text, skip_ws(b, 0))?;
    let mut out: Vec<(&str, &str)> = Vec::new();
    let mut parts = Some(Parts::default());
    while let Some(k) = members.next_key()? {
        if k.contains('\\') || out.len() == PLAIN_MEMBERS_MAX || out.iter().any(|(o, _)| *o == k) {
            return None;
        }
        let start = members.position();
        // What the merge needs is read where it is; a value it cannot use rules the merge out
        // and is skipped as any other.
        let read = match (k, parts.as_mut()) {
            (_, None) => None,
            ("\"$ref\"", Some(_)) => {
                parts = None;
                None
            }
            ("\"allOf\"" | "\"anyOf\"" | "\"oneOf\"", Some(p)) => {
                let mut variants = Vec::new();
                let end = array_at(text, start, |i| {
                    let (part, end) = variant_at(text, i)?;
                    variants.push(part);
                    Some(end)
                });
                let slot = match k {
                    "\"allOf\"" => 0,
                    "\"anyOf\"" => 1,
                    _ => 2,
                };
                end.inspect(|_| p.combinators[slot] = Some(variants))
            }
            ("\"properties\"", Some(p)) => properties_at(text, start).map(|(props, end)| {
                p.own.props = props;
                end
            }),
            ("\"required\"", Some(p)) => required_at(text, start).map(|(required, end)| {
                p.own.required = required;
                end
            }),
            _ => None,
        };
        let value = match read {
            Some(end) => {
                members.past_value(end)?;
                &text[start..end]
            }
            None => {
                if matches!(
                    k,
                    "\"allOf\"" | "\"anyOf\"" | "\"oneOf\"" | "\"properties\"" | "\"required\""
                ) {
                    parts = None;
                }
                members.skip()?
            }
        };
        out.push((k, value));
    }
    (skip_ws(b, members.position()) == text.len()).then_some(Root {
        members: out,
        parts,
    })
}

/// The merged view of a schema, as `schema::normalize` computes it: properties in order of
/// first appearance (root, `allOf`, `anyOf`, `oneOf`), required keys without duplicates.
#[derive(Default)]
struct Flat<'a> {
    defs: Vec<(&'a str, &'a str)>,
    required: Vec<&'a str>,
}

impl<'a> Flat<'a> {
    /// `None` when the property already has another definition (the general path advertises
    /// such a property as `anyOf` of its definitions).
    fn add_def(&mut self, key: &'a str, def: &'a str) -> Option<()> {
        match self.defs.iter().find(|(k, _)| *k == key) {
            Some((_, d)) if *d == def => Some(()),
            Some(_) => None,
            None => {
                self.defs.push((key, def));
                Some(())
            }
        }
    }

    fn add_required(&mut self, r: &'a str) {
        if !self.required.contains(&r) {
            self.required.push(r);
        }
    }

    fn requires(&self, name: &str) -> bool {
        self.required.iter().any(|r| unquote(r) == name)
    }
}

/// The text between the quotes of a key or string written without escapes.
fn unquote(s: &str) -> &str {
    &s[1..s.len() - 1]
}

/// A JSON object written member by member at the end of a buffer.
struct Obj<'b> {
    buf: &'b mut String,
    empty: bool,
}

impl<'b> Obj<'b> {
    fn open(buf: &'b mut String) -> Self {
        buf.push('{');
        Self { buf, empty: true }
    }

    /// Writes `k:` (after a comma if needed); the value goes in the buffer returned.
    fn key(&mut self, k: &str) -> &mut String {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        self.buf.push_str(k);
        self.buf.push(':');
        self.buf
    }

    fn member(&mut self, k: &str, v: &str) {
        self.key(k).push_str(v);
    }

    fn close(self) {
        self.buf.push('}');
    }
}

/// An object of `(key, value)` members (raw text) appended to `buf`.
fn push_members<'a, 'b: 'a>(
    buf: &mut String,
    members: impl Iterator<Item = &'a (&'b str, &'b str)>,
) {
    buf.push('{');
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str(k);
        buf.push(':');
        buf.push_str(v);
    }
    buf.push('}');
}

/// An array of items (raw text) appended to `buf`.
fn push_list<'a>(buf: &mut String, items: impl Iterator<Item = &'a str>) {
    buf.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str(item);
    }
    buf.push(']');
}

/// The upstream's effective schema as the Anthropic profile merges it (`schema::normalize`),
/// for plain roots and variants; `None` for anything else.
fn flatten<'a>(root: &Root<'a>) -> Option<Flat<'a>> {
    let parts = root.parts.as_ref()?;
    let mut flat = Flat::default();
    parts.own.each_prop(|k, d| flat.add_def(k, d))?;
    parts.own.each_required(|r| {
        flat.add_required(r);
        Some(())
    })?;
    let [all_of, any_of, one_of] = &parts.combinators;
    for p in all_of.iter().flatten() {
        p.each_prop(|k, d| flat.add_def(k, d))?;
        p.each_required(|r| {
            flat.add_required(r);
            Some(())
        })?;
    }
    for alts in [any_of, one_of].into_iter().flatten() {
        for p in alts {
            p.each_prop(|k, d| flat.add_def(k, d))?;
        }
        // Required: what every alternative requires.
        if let Some((first, rest)) = alts.split_first() {
            first.each_required(|r| {
                if rest.iter().all(|a| a.requires(r)) {
                    flat.add_required(r);
                }
                Some(())
            })?;
        }
    }
    Some(flat)
}

/// Writes `schema` to `buf` without the removed parameters in `properties` and `required`, at
/// the root and in its `allOf` / `anyOf` / `oneOf` variants down to `MAX_STRIP_DEPTH` (as
/// `rewrite`'s `strip_params` does). Everything else is copied as it is.
fn strip(
    buf: &mut String,
    schema: &[(&str, &str)],
    removed: &dyn Fn(&str) -> bool,
    depth: usize,
) -> Option<()> {
    let mut obj = Obj::open(buf);
    for &(k, v) in schema {
        match k {
            "\"properties\"" if v.starts_with('{') => {
                let props = plain_members(v)?;
                push_members(obj.key(k), props.iter().filter(|(p, _)| !removed(p)));
            }
            "\"required\"" if v.starts_with('[') => {
                let items = array_items(v)?;
                if items.iter().any(|r| r.starts_with('"') && r.contains('\\')) {
                    return None;
                }
                let kept = items
                    .into_iter()
                    .filter(|r| !(r.starts_with('"') && removed(r)));
                push_list(obj.key(k), kept);
            }
            "\"allOf\"" | "\"anyOf\"" | "\"oneOf\""
                if depth < MAX_STRIP_DEPTH && v.starts_with('[') =>
            {
                let out = obj.key(k);
                out.push('[');
                for (i, item) in array_items(v)?.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if item.starts_with('{') {
                        strip(out, &plain_members(item)?, removed, depth + 1)?;
                    } else {
                        out.push_str(item);
                    }
                }
                out.push(']');
            }
            _ => obj.member(k, v),
        }
    }
    obj.close();
    Some(())
}

/// The tool as [`super::rewrite::rewrite_tool`] would make it (plus `name` set to `exposed`),
/// or `None` when the tool is not of the plain shape described in the module docs.
///
/// `key` is the tool's [`ItemKey`] scan: the members replaced are found there, and everything
/// else in `raw` is copied as it is.
pub fn rewrite_tool_raw(
    raw: &str,
    key: &ItemKey<'_>,
    rw: &ToolRewrite,
    profile: Profile,
    exposed: &str,
) -> Option<String> {
    if profile == Profile::OpenAi || rw.annotations.is_some() || key.repeated {
        return None;
    }
    let schema_raw = key.input_schema?;
    let root = read_root(schema_raw)?;

    let removed = |key: &str| {
        let name = unquote(key);
        rw.pin.contains_key(name)
            || rw.hide.iter().any(|h| h == name)
            || NEVER_ADVERTISED.contains(&name)
    };
    // Everything that can refuse the tool is decided before anything is written.
    let merged = if profile == Profile::Passthrough {
        // Hiding a required parameter is refused (with its reason) by the general path.
        if !rw.hide.is_empty() {
            let flat = flatten(&root)?;
            if rw.hide.iter().any(|h| flat.requires(h)) {
                return None;
            }
        }
        None
    } else {
        let mut flat = flatten(&root)?;
        // Hiding a required parameter is refused (with its reason) by the general path. (Its
        // notes on pins and hides the schema does not declare are not needed: they are only
        // logged, at debug level, and with debug logging on the caller takes the general path.)
        if rw.hide.iter().any(|h| flat.requires(h)) {
            return None;
        }
        flat.required.retain(|r| !removed(r));
        // A required key with no definition is advertised with an empty (any value) one.
        for i in 0..flat.required.len() {
            let r = flat.required[i];
            if !flat.defs.iter().any(|(k, _)| *k == r) {
                flat.defs.push((r, "{}"));
            }
        }
        Some(flat)
    };

    // The members replaced, by where they are in `raw`; texts the tool lacks go at its end.
    #[derive(Clone, Copy)]
    enum Piece<'s> {
        Name,
        Schema,
        Text(&'s str),
    }
    let mut pieces: [(std::ops::Range<usize>, Piece<'_>); 4] =
        std::array::from_fn(|_| (0..0, Piece::Name));
    let span = |part: &str| span_in(raw.as_bytes(), part.as_bytes());
    pieces[0] = (span(key.name?)?, Piece::Name);
    pieces[1] = (span(schema_raw)?, Piece::Schema);
    let mut n = 2;
    let mut added: [Option<(&str, &str)>; 2] = [None, None];
    for (slot, (new, old, member)) in [
        (&rw.description, key.description, "\"description\""),
        (&rw.title, key.title, "\"title\""),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(new) = new else { continue };
        match old {
            Some(old) => {
                pieces[n] = (span(old)?, Piece::Text(new));
                n += 1;
            }
            None => added[slot] = Some((member, new)),
        }
    }
    let pieces = &mut pieces[..n];
    pieces.sort_unstable_by_key(|(span, _)| span.start);
    // The object's closing brace, before which added members go.
    let close = raw.trim_end().len().checked_sub(1)?;
    let texts: usize = [&rw.description, &rw.title]
        .iter()
        .map(|t| t.as_ref().map_or(0, |t| t.len() + 16))
        .sum();
    let mut out = String::with_capacity(raw.len() + exposed.len() + texts + 32);
    let mut at = 0;
    for (span, piece) in pieces.iter() {
        out.push_str(raw.get(at..span.start)?);
        match piece {
            Piece::Name => push_json_str(exposed, |p| out.push_str(p)),
            Piece::Text(t) => push_json_str(t, |p| out.push_str(p)),
            Piece::Schema => match &merged {
                None => strip(&mut out, &root.members, &removed, 0)?,
                Some(flat) => write_merged(&mut out, &root.members, flat, &removed),
            },
        }
        at = span.end;
    }
    out.push_str(raw.get(at..close)?);
    for (member, text) in added.into_iter().flatten() {
        out.push(',');
        out.push_str(member);
        out.push(':');
        push_json_str(text, |p| out.push_str(p));
    }
    out.push_str(raw.get(close..)?);
    Some(out)
}

/// The schema the Anthropic profile advertises: the root's own members in their order, with
/// `type` set to `"object"`, the merged properties and required keys (without the removed
/// parameters), and no `$schema` or combinators.
fn write_merged(
    out: &mut String,
    root: &[(&str, &str)],
    flat: &Flat<'_>,
    removed: &dyn Fn(&str) -> bool,
) {
    let mut schema = Obj::open(out);
    let write_properties =
        |buf: &mut String| push_members(buf, flat.defs.iter().filter(|(p, _)| !removed(p)));
    let kept_required = || flat.required.iter().copied();
    if !root.iter().any(|(k, _)| *k == "\"type\"") {
        schema.member("\"type\"", "\"object\"");
    }
    let (mut placed_properties, mut placed_required) = (false, false);
    for &(k, v) in root {
        match k {
            "\"type\"" => schema.member(k, "\"object\""),
            "\"properties\"" => {
                write_properties(schema.key(k));
                placed_properties = true;
            }
            "\"required\"" => {
                push_list(schema.key(k), kept_required());
                placed_required = true;
            }
            "\"$schema\"" | "\"allOf\"" | "\"anyOf\"" | "\"oneOf\"" => {}
            _ => schema.member(k, v),
        }
    }
    if !placed_properties {
        write_properties(schema.key("\"properties\""));
    }
    if !placed_required && !flat.required.is_empty() {
        push_list(schema.key("\"required\""), kept_required());
    }
    schema.close();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::rewrite::rewrite_tool_bytes;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// The fast path as the catalog calls it: after the item scan.
    fn fast(raw: &str, rw: &ToolRewrite, profile: Profile, exposed: &str) -> Option<String> {
        let key = ItemKey::scan(raw, false)?;
        rewrite_tool_raw(raw, &key, rw, profile, exposed)
    }

    /// A JSON value that refuses objects naming a key twice (which `Value` would collapse).
    struct Strict(Value);

    impl<'de> serde::Deserialize<'de> for Strict {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Strict;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("JSON")
                }
                fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                    Ok(Strict(v.into()))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                    Ok(Strict(v.into()))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                    Ok(Strict(v.into()))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                    Ok(Strict(v.into()))
                }
                fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                    Ok(Strict(v.into()))
                }
                fn visit_unit<E>(self) -> Result<Strict, E> {
                    Ok(Strict(Value::Null))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Strict, A::Error> {
                    let mut out = vec![];
                    while let Some(Strict(v)) = seq.next_element()? {
                        out.push(v);
                    }
                    Ok(Strict(Value::Array(out)))
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Strict, A::Error> {
                    let mut out = serde_json::Map::new();
                    while let Some((k, Strict(v))) = map.next_entry::<String, Strict>()? {
                        if out.insert(k.clone(), v).is_some() {
                            return Err(serde::de::Error::custom(format!("key {k} twice")));
                        }
                    }
                    Ok(Strict(Value::Object(out)))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// Member order included (serde_json keeps insertion order here); a key written twice in
    /// one object fails the test.
    fn canonical(bytes: &[u8]) -> String {
        let Strict(v) = serde_json::from_slice(bytes).unwrap();
        v.to_string()
    }

    fn both(
        tool: &Value,
        rw: &ToolRewrite,
        profile: Profile,
    ) -> (Option<String>, Result<Vec<u8>, String>) {
        let raw = tool.to_string();
        let fast = fast(&raw, rw, profile, "srv__t");
        let general = rewrite_tool_bytes(raw.as_bytes(), rw, profile, "srv__t").map(|(b, _)| b);
        (fast, general)
    }

    fn agree(tool: &Value, rw: &ToolRewrite, profile: Profile) -> bool {
        match both(tool, rw, profile) {
            (Some(f), Ok(g)) => {
                assert_eq!(
                    canonical(f.as_bytes()),
                    canonical(&g),
                    "tool {tool} rw {rw:?} {profile:?}"
                );
                true
            }
            (Some(f), Err(e)) => {
                panic!("fast path answered {f} where the general path refuses: {e}")
            }
            (None, _) => false,
        }
    }

    fn union_tool() -> Value {
        json!({
            "name": "t", "description": "d",
            "inputSchema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "anyOf": [
                    {"type": "object", "properties": {"path": {"type": "string"}, "mode": {"type": "string"}}, "required": ["path", "mode"]},
                    {"type": "object", "properties": {"url": {"type": "string"}, "mode": {"type": "string"}}, "required": ["url", "mode"]}
                ]
            },
            "annotations": {"readOnlyHint": true}
        })
    }

    #[test]
    fn common_shapes_take_the_fast_path_and_agree() {
        let plain = json!({
            "name": "t",
            "inputSchema": {"$schema": "x", "type": "object", "properties": {"a": {"type": "string"}, "b": {}, "confirmation_token": {}}, "required": ["a"], "additionalProperties": false}
        });
        let mut rw = ToolRewrite {
            description: Some("New \"text\"".into()),
            title: Some("T".into()),
            hide: vec!["b".into()],
            ..ToolRewrite::default()
        };
        rw.pin.insert("a".into(), json!(1));
        for profile in [Profile::Passthrough, Profile::Anthropic] {
            assert!(agree(&plain, &rw, profile));
            assert!(agree(&plain, &ToolRewrite::default(), profile));
        }
        assert!(agree(
            &union_tool(),
            &ToolRewrite::default(),
            Profile::Anthropic
        ));
        let hide_mode = ToolRewrite {
            hide: vec!["url".into()],
            ..ToolRewrite::default()
        };
        assert!(agree(&union_tool(), &hide_mode, Profile::Anthropic));
        let (fast, _) = both(&union_tool(), &ToolRewrite::default(), Profile::Anthropic);
        let out: Value = serde_json::from_str(&fast.unwrap()).unwrap();
        assert_eq!(
            out["inputSchema"].to_string(),
            json!({"type": "object", "properties": {"path": {"type": "string"}, "mode": {"type": "string"}, "url": {"type": "string"}}, "required": ["mode"]}).to_string()
        );
        assert_eq!(out["inputSchema"]["required"], json!(["mode"]));
        assert_eq!(out["name"], json!("srv__t"));
    }

    #[test]
    fn other_shapes_are_left_to_the_general_path() {
        let with_ref = json!({"name": "t", "inputSchema": {"$ref": "#/$defs/A", "$defs": {"A": {"type": "object"}}}});
        let conflict = json!({"name": "t", "inputSchema": {"anyOf": [
            {"properties": {"a": {"type": "string"}}}, {"properties": {"a": {"type": "integer"}}}]}});
        let nested = json!({"name": "t", "inputSchema": {"anyOf": [{"anyOf": [{"properties": {"a": {}}}]}]}});
        for tool in [&with_ref, &conflict, &nested] {
            assert_eq!(
                both(tool, &ToolRewrite::default(), Profile::Anthropic).0,
                None,
                "{tool}"
            );
        }
        let plain = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"a": {}}, "required": ["a"]}});
        let hide_required = ToolRewrite {
            hide: vec!["a".into()],
            ..ToolRewrite::default()
        };
        let (answer, general) = both(&plain, &hide_required, Profile::Anthropic);
        assert_eq!(answer, None);
        assert!(general.is_err());
        assert_eq!(
            both(&plain, &ToolRewrite::default(), Profile::OpenAi).0,
            None
        );
        // Texts are replaced where they are, under whatever spelling of their key.
        let rw = ToolRewrite {
            description: Some("New.".into()),
            title: Some("T".into()),
            ..ToolRewrite::default()
        };
        let raw = r#"{"descr\u0069ption":"old","name":"t","inputSchema":{"type":"object","properties":{}},"x":[1]}"#;
        let out = fast(raw, &rw, Profile::Passthrough, "srv__t").unwrap();
        assert_eq!(
            out,
            r#"{"descr\u0069ption":"New.","name":"srv__t","inputSchema":{"type":"object","properties":{}},"x":[1],"title":"T"}"#
        );
        let general = rewrite_tool_bytes(raw.as_bytes(), &rw, Profile::Passthrough, "srv__t")
            .unwrap()
            .0;
        assert_eq!(canonical(out.as_bytes()), canonical(&general));
        // A text given twice is left to the general path.
        let raw = r#"{"name":"t","title":"a","title":"b","inputSchema":{"type":"object","properties":{}}}"#;
        assert_eq!(fast(raw, &rw, Profile::Passthrough, "x"), None);
        // Escaped keys in the schema are decoded only by the general path.
        let raw = r#"{"name":"t","inputSchema":{"type":"object","properties":{"\u0061":{}}}}"#;
        assert_eq!(
            fast(raw, &ToolRewrite::default(), Profile::Anthropic, "x"),
            None
        );
    }

    const NAMES: [&str; 5] = ["a", "b", "mode", "path", "confirmation_token"];

    fn def() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({"type": "string"})),
            Just(json!({"type": "integer", "minimum": 0})),
            Just(json!({})),
            Just(json!({"type": "string", "enum": ["r", "w"]})),
        ]
    }

    fn props() -> impl Strategy<Value = Value> {
        prop::collection::vec((prop::sample::select(&NAMES[..]), def()), 0..4).prop_map(|ps| {
            let mut m = serde_json::Map::new();
            for (k, d) in ps {
                m.insert(k.to_string(), d);
            }
            Value::Object(m)
        })
    }

    fn required() -> impl Strategy<Value = Value> {
        prop::collection::vec(prop::sample::select(&NAMES[..]), 0..3).prop_map(|r| json!(r))
    }

    fn object_schema(with_type: Vec<Value>) -> impl Strategy<Value = Value> {
        (
            prop::option::of(prop::sample::select(with_type)),
            prop::option::of(props()),
            prop::option::of(required()),
            any::<bool>(),
        )
            .prop_map(|(t, p, r, described)| {
                let mut m = serde_json::Map::new();
                if described {
                    m.insert("description".into(), json!("about"));
                }
                if let Some(t) = t {
                    m.insert("type".into(), t);
                }
                if let Some(p) = p {
                    m.insert("properties".into(), p);
                }
                if let Some(r) = r {
                    m.insert("required".into(), r);
                }
                Value::Object(m)
            })
    }

    fn schema() -> impl Strategy<Value = Value> {
        let plain = || object_schema(vec![json!("object"), json!("string")]);
        // Mostly plain variants; sometimes `true`, a nested anyOf or a $ref.
        let variant = move || {
            prop_oneof![
                6 => plain(),
                1 => Just(json!(true)),
                1 => prop::collection::vec(plain(), 0..3).prop_map(|v| json!({"anyOf": v})),
                1 => Just(json!({"$ref": "#/$defs/A"})),
            ]
        };
        (
            object_schema(vec![json!("object"), json!("object"), json!("array")]),
            any::<bool>(),
            prop::option::of(prop::collection::vec(variant(), 0..3)),
            prop::option::of(prop::collection::vec(variant(), 0..3)),
            prop::option::of(prop::collection::vec(variant(), 0..3)),
        )
            .prop_map(|(mut root, dollar_schema, all_of, any_of, one_of)| {
                let m = root.as_object_mut().unwrap();
                if dollar_schema {
                    m.insert(
                        "$schema".into(),
                        json!("http://json-schema.org/draft-07/schema#"),
                    );
                }
                for (kw, v) in [("allOf", all_of), ("anyOf", any_of), ("oneOf", one_of)] {
                    if let Some(v) = v {
                        m.insert(kw.into(), Value::Array(v));
                    }
                }
                root
            })
    }

    fn rewrite() -> impl Strategy<Value = ToolRewrite> {
        (
            prop::collection::vec(prop::sample::select(&NAMES[..]), 0..2),
            prop::collection::vec(prop::sample::select(&NAMES[..]), 0..2),
            prop::option::of(Just("Rewritten.".to_string())),
            prop::option::of(Just("Title".to_string())),
        )
            .prop_map(|(pin, hide, description, title)| {
                let mut rw = ToolRewrite {
                    description,
                    title,
                    hide: hide.into_iter().map(String::from).collect(),
                    ..ToolRewrite::default()
                };
                for p in pin {
                    rw.pin.insert(p.into(), json!("pinned"));
                }
                rw
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A schema the scan calls plain is one the Anthropic profile leaves exactly as it is.
        #[test]
        fn plain_object_schemas_are_left_as_they_are(schema in schema(), pretty in any::<bool>()) {
            let raw = if pretty { serde_json::to_string_pretty(&schema).unwrap() } else { schema.to_string() };
            if crate::mcp::is_plain_object_schema(&raw) {
                let (normalized, _) = crate::policy::schema::normalize(&schema, Profile::Anthropic);
                prop_assert_eq!(normalized.to_string(), schema.to_string());
            }
        }

        /// Wherever the fast path answers, it answers what the general path does.
        #[test]
        fn fast_path_agrees_with_the_general_path(
            schema in schema(),
            rw in rewrite(),
            anthropic in any::<bool>(),
            described in 0..3u8,
            titled in any::<bool>(),
            pretty in any::<bool>(),
        ) {
            let mut tool = json!({"name": "t", "inputSchema": schema, "annotations": {"readOnlyHint": true}});
            match described {
                1 => tool["description"] = json!("Upstream text."),
                2 => tool["description"] = Value::Null,
                _ => {}
            }
            if titled {
                tool["title"] = json!("Upstream title");
            }
            let profile = if anthropic { Profile::Anthropic } else { Profile::Passthrough };
            let raw = if pretty { serde_json::to_string_pretty(&tool).unwrap() } else { tool.to_string() };
            let fast = fast(&raw, &rw, profile, "srv__t");
            let general = rewrite_tool_bytes(raw.as_bytes(), &rw, profile, "srv__t").map(|(b, _)| b);
            match (fast, general) {
                (Some(f), Ok(g)) => prop_assert_eq!(canonical(f.as_bytes()), canonical(&g)),
                (Some(f), Err(e)) => prop_assert!(false, "fast path answered {} where the general path refuses: {}", f, e),
                (None, _) => {}
            }
        }
    }
}
