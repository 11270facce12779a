//! `x-mcp-header` (MCP 2026-07-28, SEP-2243): a tool may ask that some of its arguments
//! travel as HTTP headers too (`Mcp-Param-{Name}`), so that gateways can route on them without
//! reading the body.
//!
//! Owns: which annotations are valid (a tool with an invalid one is dropped by HTTP clients),
//! reading an argument's header text, checking the headers a client sent against the body,
//! and the headers a client sends for a call. Must not: know which tool a call names or where
//! its schema comes from (the session and the transports say).

use serde_json::{Map, Value};

/// One argument a tool wants as a header: `Mcp-Param-{name}`, for the property at `path`
/// (a chain of `properties` keys from the input schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParam {
    pub name: String,
    pub path: Vec<String>,
}

impl HeaderParam {
    /// The header's name, lower-cased (HTTP names are case-insensitive).
    pub fn header(&self) -> String {
        format!("mcp-param-{}", self.name.to_ascii_lowercase())
    }
}

/// The key that marks an argument.
pub const ANNOTATION: &str = "x-mcp-header";

/// The annotations of a tool's `inputSchema`, or why they are invalid: a name that is not an
/// RFC 9110 token or repeats another (case-insensitively), a property that is not a string,
/// integer or boolean, or an annotation anywhere but on a property reached through
/// `properties` alone.
pub fn annotations(input_schema: &Value) -> Result<Vec<HeaderParam>, String> {
    let mut found = vec![];
    walk_properties(input_schema, &mut vec![], &mut found)?;
    let everywhere = count_annotations(input_schema);
    if everywhere != found.len() {
        return Err(format!(
            "`{ANNOTATION}` is only allowed on properties reached through `properties`"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &found {
        if !seen.insert(p.name.to_ascii_lowercase()) {
            return Err(format!("`{ANNOTATION}` name {:?} is used twice", p.name));
        }
    }
    Ok(found)
}

fn walk_properties(
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<HeaderParam>,
) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(a) = prop.get(ANNOTATION) {
            let name = a
                .as_str()
                .filter(|n| is_token(n))
                .ok_or_else(|| format!("`{ANNOTATION}` of {key:?} is not a header name"))?;
            let typed = prop.get("type").and_then(Value::as_str);
            if !matches!(typed, Some("string" | "integer" | "boolean")) {
                return Err(format!(
                    "`{ANNOTATION}` of {key:?} is on a property that is not a string, integer or boolean"
                ));
            }
            out.push(HeaderParam {
                name: name.to_string(),
                path: path.clone(),
            });
        }
        walk_properties(prop, path, out)?;
        path.pop();
    }
    Ok(())
}

fn count_annotations(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            usize::from(m.contains_key(ANNOTATION))
                + m.values().map(count_annotations).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_annotations).sum(),
        _ => 0,
    }
}

/// RFC 9110 `token`: `1*tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The argument at `path`, when present and not null.
fn argument<'a>(args: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = args.get(first)?;
    for k in rest {
        v = v.get(k)?;
    }
    (!v.is_null()).then_some(v)
}

/// An argument's text in a header: strings as they are, integers in decimal, booleans as
/// `true`/`false` (`None` for anything else).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Some(i.to_string()),
            (_, Some(u), _) => Some(u.to_string()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                Some(format!("{f:.0}"))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether a header's (decoded) text says what the body's argument says (integers compare
/// as numbers: `42.0` is `42`).
fn agrees(header: &str, body: &Value) -> bool {
    match body {
        Value::Number(n) => match (header.parse::<f64>(), n.as_f64()) {
            (Ok(h), Some(b)) => h == b,
            _ => false,
        },
        other => text(other).as_deref() == Some(header),
    }
}

/// Checks the `Mcp-Param-*` headers a client sent for a call against its arguments: each
/// annotated argument present in the body must come as its header (decoded, equal), and an
/// absent one must not. `get` reads a header by its lower-case name (`Err`: sent twice or
/// not text). `Err` says what disagrees.
pub fn check<'h>(
    params: &[HeaderParam],
    args: &Map<String, Value>,
    get: &dyn Fn(&str) -> Result<Option<&'h str>, ()>,
) -> Result<(), String> {
    for p in params {
        let header = p.header();
        let label = format!("Mcp-Param-{}", p.name);
        let sent = get(&header).map_err(|()| format!("{label} header is not valid"))?;
        match (argument(args, &p.path), sent) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(format!("{label} header is present but the argument is not"))
            }
            (Some(_), None) => {
                return Err(format!(
                    "{label} header is missing but the argument is present"
                ))
            }
            (Some(body), Some(h)) => {
                let decoded = crate::mcp::header_value_decode(h)
                    .ok_or_else(|| format!("{label} header is not valid base64"))?;
                if !agrees(&decoded, body) {
                    return Err(format!(
                        "{label} header does not match the argument in the body"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The `Mcp-Param-*` headers a client sends for a call with `args`: (lower-case name, value).
pub fn emit(params: &[HeaderParam], args: &Map<String, Value>) -> Vec<(String, String)> {
    params
        .iter()
        .filter_map(|p| {
            let t = text(argument(args, &p.path)?)?;
            Some((p.header(), crate::mcp::header_value_encode(&t)))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_follow_the_specification() {
        let ok = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}},
        }});
        let a = annotations(&ok).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].path, vec!["opts".to_string(), "n".to_string()]);
        let bad = |s: Value| annotations(&s).unwrap_err();
        bad(json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}));
        bad(json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}));
        bad(json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}));
        bad(json!({"properties": {
            "a": {"type": "string", "x-mcp-header": "X"},
            "b": {"type": "string", "x-mcp-header": "x"},
        }}));
        bad(
            json!({"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}}}),
        );
        bad(json!({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}));
    }

    #[test]
    fn headers_are_checked_against_the_body_and_emitted_from_it() {
        let params = annotations(&json!({"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
        }}))
        .unwrap();
        let args: Map<String, Value> =
            serde_json::from_value(json!({"region": "Hello, 世界", "n": 42})).unwrap();
        let sent = emit(&params, &args);
        assert_eq!(
            sent,
            vec![
                (
                    "mcp-param-region".into(),
                    "=?base64?SGVsbG8sIOS4lueVjA==?=".into()
                ),
                ("mcp-param-n".into(), "42".into()),
            ]
        );
        let check_with = |h: &[(String, String)], args: &Map<String, Value>| {
            let get = |name: &str| Ok(h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()));
            check(&params, args, &get)
        };
        assert_eq!(check_with(&sent, &args), Ok(()));
        let mut n = sent.clone();
        n[1].1 = "42.0".into();
        assert_eq!(check_with(&n, &args), Ok(()), "numbers compare as numbers");
        assert!(check_with(&sent[1..], &args).is_err(), "missing");
        let mut wrong = sent.clone();
        wrong[0].1 = "=?base64?SGVsbG8?=".into();
        assert!(check_with(&wrong, &args).is_err(), "bad padding");
        assert!(
            check_with(&sent, &Map::new()).is_err(),
            "header without argument"
        );
    }
}
