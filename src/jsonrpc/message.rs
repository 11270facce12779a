use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What a JSON-RPC message is, judged by its members (not by trusting a `type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    /// A response: `result` or `error` with an `id`.
    Response,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Invalid(&'static str),
    /// Arrays and objects nested deeper than [`super::skim::MAX_DEPTH`] anywhere in it. `id`:
    /// the message's own id, when it could be read (to answer under it); `request`: it has a
    /// `method` (so it is not an answer to anything).
    #[error("JSON nested deeper than {} levels", super::skim::MAX_DEPTH)]
    TooDeep { id: Option<String>, request: bool },
}

impl ParseError {
    /// The error a peer gets for a message that could not be taken: under its id when the
    /// message was a request whose id could be read, else with a null id.
    pub fn answer(&self) -> Message {
        match self {
            ParseError::Json(_) => error_response(None, super::code::PARSE_ERROR, "Parse error"),
            ParseError::Invalid(why) => error_response(
                None,
                super::code::INVALID_REQUEST,
                &format!("Invalid Request: {why}"),
            ),
            ParseError::TooDeep { id, request } => error_response(
                id.as_deref().filter(|_| *request),
                super::code::INVALID_REQUEST,
                &format!("Invalid Request: {self}"),
            ),
        }
    }
}

/// One JSON-RPC message: the exact bytes received plus the spans of the members mcp-warden reads.
///
/// Cloning is cheap (`Bytes`). Spans index into `raw`, which is valid UTF-8 (checked once,
/// when parsed).
#[derive(Clone)]
pub struct Message {
    raw: ByteString,
    kind: Kind,
    id: Option<Span>,
    method: Option<Span>,
    params: Option<Span>,
    result: Option<Span>,
    error: Option<Span>,
}

/// A byte range of a message, in 32 bits: a message is moved and queued many times per call,
/// and these keep it at 96 bytes instead of 160 (messages are far below 4 GiB: bodies and
/// lines are limited to a few MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub fn of(r: Range<usize>) -> Span {
        Span {
            start: r.start as u32,
            end: r.end as u32,
        }
    }

    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl std::fmt::Debug for Message {
    // Never print payloads: they can hold secrets (and the consent `action_id`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("id", &self.id_str())
            .field("method", &self.method())
            .field("len", &self.raw.len())
            .finish()
    }
}

/// `id` as present-or-absent, keeping `null` (which `Option<&RawValue>` would fold into absent).
fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// The byte range of `part` inside `base`. `part` must borrow from `base` (serde's borrowed
/// `RawValue` does), which is checked; a foreign slice yields an empty range at 0.
fn span_of(base: &[u8], part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    if start <= base.len() && end <= base.len() && start <= end {
        start..end
    } else {
        debug_assert!(false, "span_of: slice does not borrow from base");
        0..0
    }
}

/// A single message or a batch, as received.
pub enum Payload {
    Single(Message),
    /// Each element parsed on its own; an element that is not a valid message is kept as its
    /// error so that the batch answer can report it in place.
    Batch(Vec<Result<Message, ParseError>>),
}

/// Parses one JSON-RPC payload (single message or batch).
pub fn parse_payload(raw: Bytes) -> Result<Payload, ParseError> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'[') {
        let items: Vec<&RawValue> =
            serde_json::from_slice(&raw).map_err(|e| ParseError::Json(e.to_string()))?;
        if items.is_empty() {
            return Err(ParseError::Invalid("empty batch"));
        }
        let out = items
            .iter()
            .map(|item| {
                let span = span_of(&raw, item.get());
                Message::parse(raw.slice(span))
            })
            .collect();
        Ok(Payload::Batch(out))
    } else {
        Message::parse(raw).map(Payload::Single)
    }
}

impl Message {
    /// Parses one JSON-RPC message, keeping `raw` as it is.
    pub fn parse(raw: Bytes) -> Result<Message, ParseError> {
        // serde_json skips unknown members without checking their UTF-8; the spans we hand out
        // must be valid text, and so must everything we forward.
        let raw =
            ByteString::try_from(raw).map_err(|_| ParseError::Json("invalid UTF-8".into()))?;
        if u32::try_from(raw.len()).is_err() {
            return Err(ParseError::Invalid("message over 4 GiB"));
        }
        // serde_json skips members it does not keep without any depth limit: a value nested
        // 100,000 deep inside `arguments` would be forwarded to a peer that cannot read it.
        if super::skim::too_deep(raw.as_bytes(), super::skim::MAX_DEPTH) {
            let skim = super::skim::Skim::of(raw.as_bytes());
            return Err(ParseError::TooDeep {
                id: skim.id().map(str::to_string),
                request: skim.has_method(),
            });
        }
        // Valid JSON of the wrong shape (`42`, `"x"`, an `id` that is an object) is an invalid
        // request, not a parse error (JSON-RPC 2.0, section 6's examples).
        let view: View<'_> = serde_json::from_str(&raw).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ParseError::Invalid("a message is a JSON object with JSON-RPC members")
            }
            _ => ParseError::Json(e.to_string()),
        })?;
        // Compared as written ("2.0", no allocation); an escaped spelling is decoded.
        let version_ok = view.jsonrpc.is_some_and(|v| {
            v.get() == r#""2.0""#
                || (v.get().contains('\\')
                    && serde_json::from_str::<Cow<'_, str>>(v.get()).is_ok_and(|v| v == "2.0"))
        });
        if !version_ok {
            return Err(ParseError::Invalid("jsonrpc must be \"2.0\""));
        }
        let base: &[u8] = raw.as_bytes();
        let span = |v: Option<&RawValue>| v.map(|v| Span::of(span_of(base, v.get())));
        let method = match view.method {
            Some(m) => {
                let s = m.get();
                if !s.starts_with('"') {
                    return Err(ParseError::Invalid("method must be a string"));
                }
                // Method names with escapes are legal but never MCP's; keep the span of the
                // unescaped-looking contents only when there is no backslash.
                if s.contains('\\') {
                    return Err(ParseError::Invalid(
                        "escaped method names are not supported",
                    ));
                }
                let r = span_of(base, s);
                Some(Span::of(r.start + 1..r.end - 1))
            }
            None => None,
        };
        if let Some(id) = view.id {
            let s = id.get().as_bytes();
            let ok = matches!(s.first(), Some(b'"') | Some(b'-') | Some(b'0'..=b'9'));
            if !ok && s != b"null" {
                return Err(ParseError::Invalid("id must be a string or a number"));
            }
        }
        let kind = match (&method, &view.id, &view.result, &view.error) {
            (Some(_), Some(_), None, None) => Kind::Request,
            (Some(_), None, None, None) => Kind::Notification,
            (None, Some(_), Some(_), None) | (None, Some(_), None, Some(_)) => Kind::Response,
            (None, Some(_), Some(_), Some(_)) => {
                return Err(ParseError::Invalid(
                    "a response has result or error, not both",
                ))
            }
            _ => {
                return Err(ParseError::Invalid(
                    "neither a request, notification nor response",
                ))
            }
        };
        if kind == Kind::Request && view.id.map(|i| i.get()) == Some("null") {
            return Err(ParseError::Invalid("a request id must not be null"));
        }
        Ok(Message {
            kind,
            id: span(view.id),
            method,
            params: span(view.params),
            result: span(view.result),
            error: span(view.error),
            raw,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn bytes(&self) -> &Bytes {
        self.raw.as_bytes()
    }

    pub fn into_bytes(self) -> Bytes {
        self.raw.into_bytes()
    }

    fn slice(&self, r: &Option<Span>) -> Option<&str> {
        // The spans come from serde's borrowed views of valid UTF-8 JSON.
        r.and_then(|r| self.raw.get(r.range()))
    }

    /// The raw JSON text of the id (`"abc"`, `42`, `null`), if any.
    pub fn id_str(&self) -> Option<&str> {
        self.slice(&self.id)
    }

    pub fn method(&self) -> Option<&str> {
        self.slice(&self.method)
    }

    pub fn params(&self) -> Option<&str> {
        self.slice(&self.params)
    }

    pub fn result(&self) -> Option<&str> {
        self.slice(&self.result)
    }

    pub fn error(&self) -> Option<&str> {
        self.slice(&self.error)
    }

    /// The text of a byte range of this message (one a view of it gave, e.g.
    /// [`crate::mcp::params::Params`]); `None` when it is not text there.
    pub fn text_at(&self, r: Range<usize>) -> Option<&str> {
        self.raw.get(r)
    }

    /// The span of a borrowed sub-slice of this message's text (e.g. from a typed view of
    /// `params`), for [`splice`].
    pub fn span_of(&self, part: &str) -> Range<usize> {
        span_of(self.raw.as_bytes(), part)
    }

    /// This message with its id replaced by `new_id` (raw JSON text). Everything else is
    /// byte-identical.
    pub fn with_id(&self, new_id: &str) -> Message {
        match self.id {
            Some(id) => self.with_edits(&[(id.range(), new_id)]),
            None => self.clone(),
        }
    }

    /// This message with `text` inserted at byte `at`: spans after it move, a span around it
    /// grows. For adding members to an object mcp-warden keeps the span of (the caller inserts
    /// valid JSON text at a place where it keeps the message valid); no re-parse.
    pub fn with_insert(&self, at: usize, text: &str) -> Message {
        self.with_edits(&[(at..at, text)])
    }

    /// This message with the bytes of `range` replaced by `text`, which must be a whole JSON
    /// value or member list where `range` was one (e.g. a member's value).
    pub fn with_replaced(&self, range: Range<usize>, text: &str) -> Message {
        self.with_edits(&[(range, text)])
    }

    /// This message with each range's bytes replaced by its text, in one copy and without a
    /// re-parse: `edits` in order, not overlapping, each text a whole JSON value or member list
    /// where its range was one (or an insertion that keeps the message valid). Spans after an
    /// edit move, a span around one grows or shrinks, an insertion where a span starts goes
    /// before it. Edits out of order, out of range or cutting a kept span in two (not a valid
    /// use) fall back to a splice and a full parse.
    pub fn with_edits(&self, edits: &[(Range<usize>, &str)]) -> Message {
        let len = self.raw.len();
        let ordered = edits
            .iter()
            .try_fold(0usize, |at, (r, _)| {
                (r.start >= at
                    && r.start <= r.end
                    && self.raw.is_char_boundary(r.start)
                    && self.raw.is_char_boundary(r.end))
                .then_some(r.end)
            })
            .is_some();
        let cuts = |s: &Option<Span>| {
            s.is_some_and(|s| {
                let (a, b) = (s.start as usize, s.end as usize);
                edits
                    .iter()
                    .any(|(r, _)| (r.start < a && a < r.end) || (r.start < b && b < r.end))
            })
        };
        let spans = [self.id, self.method, self.params, self.result, self.error];
        if !ordered || spans.iter().any(cuts) {
            debug_assert!(false, "edits out of order or cutting a kept span");
            let edits = edits.iter().map(|(r, t)| Edit::new(r.clone(), t)).collect();
            return Message::parse(splice(self.raw.as_bytes(), edits))
                .unwrap_or_else(|_| self.clone());
        }
        // Exactly the size of the result: a `Vec` whose capacity is its length becomes `Bytes`
        // without another allocation.
        let size = edits.iter().fold(len, |n, (r, t)| n + t.len() - r.len());
        let mut out = String::with_capacity(size);
        let mut at = 0;
        for (r, t) in edits {
            out.push_str(self.raw.get(at..r.start).unwrap_or_default());
            out.push_str(t);
            at = r.end;
        }
        out.push_str(self.raw.get(at..).unwrap_or_default());
        let shift = |s: Option<Span>| {
            s.map(|s| {
                Span::of(moved(edits, s.start as usize, false)..moved(edits, s.end as usize, true))
            })
        };
        Message {
            kind: self.kind,
            id: shift(self.id),
            method: shift(self.method),
            params: shift(self.params),
            result: shift(self.result),
            error: shift(self.error),
            raw: ByteString::from(out),
        }
    }

    /// Applies byte edits and re-parses (edits may move every span).
    pub fn edited(&self, edits: Vec<Edit>) -> Result<Message, ParseError> {
        if edits.is_empty() {
            return Ok(self.clone());
        }
        Message::parse(splice(self.raw.as_bytes(), edits))
    }
}

/// Where byte `x` of a message is after [`Message::with_edits`] applied `edits`: it moves by
/// the edits that end at or before it; an insertion at the start of a range (`end`: false)
/// lands before it, one at its end (`end`: true) after it, so an edit inside a range moves only
/// its end.
pub fn moved(edits: &[(Range<usize>, &str)], x: usize, end: bool) -> usize {
    edits
        .iter()
        .filter(|(r, _)| r.end <= x && !(end && r.start == x))
        .fold(x as isize, |x, (r, t)| {
            x + t.len() as isize - r.len() as isize
        }) as usize
}

/// Replace the bytes in `range` with `with`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub range: Range<usize>,
    pub with: Vec<u8>,
}

impl Edit {
    pub fn new(range: Range<usize>, with: impl AsRef<[u8]>) -> Edit {
        Edit {
            range,
            with: with.as_ref().to_vec(),
        }
    }
}

/// Applies non-overlapping edits to `raw`; all bytes outside the edited ranges are kept.
pub fn splice(raw: &[u8], mut edits: Vec<Edit>) -> Bytes {
    edits.sort_by_key(|e| e.range.start);
    // Exactly the result's size when the edits are valid (see `Message::with_edits`).
    let size = edits.iter().fold(raw.len(), |n, e| {
        (n + e.with.len()).saturating_sub(e.range.len())
    });
    let mut out = Vec::with_capacity(size);
    let mut at = 0;
    for e in edits {
        let Some(kept) = raw
            .get(at..e.range.start)
            .filter(|_| e.range.end <= raw.len())
        else {
            debug_assert!(false, "overlapping or out-of-range edit");
            continue;
        };
        out.extend_from_slice(kept);
        out.extend_from_slice(&e.with);
        at = e.range.end;
    }
    out.extend_from_slice(raw.get(at..).unwrap_or_default());
    Bytes::from(out)
}

/// The answer to a batch: the answers' bytes joined into one JSON array.
pub fn batch_array(answers: &[Message]) -> Bytes {
    let mut arr = Vec::with_capacity(answers.iter().map(|a| a.raw.len() + 1).sum::<usize>() + 2);
    arr.push(b'[');
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            arr.push(b',');
        }
        arr.extend_from_slice(a.raw.as_bytes());
    }
    arr.push(b']');
    Bytes::from(arr)
}

fn build(v: serde_json::Value) -> Message {
    // Serialising a `Value` cannot fail (string keys only) and always yields a valid message.
    let raw = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    match Message::parse(raw) {
        Ok(m) => m,
        Err(e) => unreachable_message(e),
    }
}

#[cold]
fn unreachable_message(e: ParseError) -> Message {
    tracing::error!(error = %e, "internal: built an invalid JSON-RPC message");
    Message {
        raw: ByteString::from_static(
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"error","data":"internal"}}"#,
        ),
        kind: Kind::Notification,
        id: None,
        method: Some(Span::of(22..49)),
        params: None,
        result: None,
        error: None,
    }
}

/// An error response with the given raw id. `message` must never carry internal detail.
pub fn error_response(id: Option<&str>, code: i64, message: &str) -> Message {
    error_with_data(id, code, message, None)
}

/// An error response with the given raw id and, when given, the error's `data`. `message` and
/// `data` must never carry internal detail.
pub fn error_with_data(
    id: Option<&str>,
    code: i64,
    message: &str,
    data: Option<serde_json::Value>,
) -> Message {
    let mut error = serde_json::json!({"code": code, "message": message});
    if let (Some(d), Some(e)) = (data, error.as_object_mut()) {
        e.insert("data".into(), d);
    }
    // The id is spliced in raw so that large integer ids survive exactly.
    let m = build(serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": error,
    }));
    match id {
        Some(id) => m.with_id(id),
        None => m,
    }
}

/// A success response carrying `result` for the raw id.
pub fn response(id: &str, result: serde_json::Value) -> Message {
    let m = build(serde_json::json!({"jsonrpc": "2.0", "id": 0, "result": result}));
    m.with_id(id)
}

/// A request mcp-warden issues itself.
pub fn request(id: &str, method: &str, params: serde_json::Value) -> Message {
    let m =
        build(serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}));
    m.with_id(id)
}

pub fn notification(method: &str, params: Option<serde_json::Value>) -> Message {
    match params {
        Some(p) => build(serde_json::json!({"jsonrpc": "2.0", "method": method, "params": p})),
        None => build(serde_json::json!({"jsonrpc": "2.0", "method": method})),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {

    #[test]
    fn a_replacement_moves_the_spans_as_a_new_parse_would() {
        let raw = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"a":1,"b":[2]},"arguments":{"k":"v"}}}"#;
        let m = Message::parse(Bytes::from(raw)).unwrap();
        let meta = &raw[raw.find(r#"{"a""#).unwrap()..raw.find(r#","arguments""#).unwrap()];
        for text in [
            "{}",
            r#"{"progressToken":"mw-1","a":1,"b":[2],"c":{"d":null}}"#,
        ] {
            let edited = m.with_replaced(m.span_of(meta), text).with_id(r#""mw-1""#);
            let again = Message::parse(edited.bytes().clone()).unwrap();
            assert_eq!(edited.params(), again.params());
            assert_eq!(edited.id_str(), Some(r#""mw-1""#));
            assert_eq!(edited.method(), again.method());
            assert!(edited.params().unwrap().contains(text));
        }
    }

    #[test]
    fn several_edits_in_one_copy_move_the_spans_as_a_new_parse_would() {
        let raw = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"v":"2026","progressToken":5,"a":1},"arguments":{"k":"v"}}}"#;
        let m = Message::parse(Bytes::from(raw)).unwrap();
        let at = |s: &str| raw.find(s).unwrap();
        let id = m.id.unwrap().range();
        let gone = at(r#""v":"2026","#)..at(r#""progressToken""#);
        let token = at(r#"5,"a""#)..at(r#"5,"a""#) + 1;
        // An insertion where a span ends lands after it.
        let end = m.span_of(m.params().unwrap()).end;
        let edited = m.with_edits(&[
            (id, r#""mw-1""#),
            (gone, ""),
            (token, r#""mw-1""#),
            (end..end, r#","x":1"#),
        ]);
        let again = Message::parse(edited.bytes().clone()).unwrap();
        assert_eq!(edited.params(), again.params());
        assert_eq!(edited.id_str(), Some(r#""mw-1""#));
        assert_eq!(edited.method(), again.method());
        assert_eq!(
            edited.params().unwrap(),
            r#"{"name":"x","_meta":{"progressToken":"mw-1","a":1},"arguments":{"k":"v"}}"#
        );
        assert!(std::str::from_utf8(edited.bytes())
            .unwrap()
            .ends_with(r#"},"x":1}"#));
    }

    #[test]
    fn an_insertion_moves_the_spans_as_a_new_parse_would() {
        for raw in [
            r#"{"jsonrpc":"2.0","id":7,"result":{"a":1}}"#,
            r#"{"result":{"a":[1,2]},"jsonrpc":"2.0","id":"x"}"#,
            r#"{"jsonrpc":"2.0","result":{},"id":1}"#,
        ] {
            let m = Message::parse(Bytes::from(raw)).unwrap();
            let result = m.result().unwrap();
            let at = m.span_of(result).start + 1;
            let text = if result == "{}" {
                r#""k":0"#
            } else {
                r#""k":0,"#
            };
            let edited = m.with_insert(at, text);
            let again = Message::parse(edited.bytes().clone()).unwrap();
            assert_eq!(edited.result(), again.result(), "{raw}");
            assert_eq!(edited.id_str(), again.id_str(), "{raw}");
            assert_eq!(edited.method(), again.method(), "{raw}");
            assert!(edited.result().unwrap().starts_with(r#"{"k":0"#));
        }
    }

    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn request_envelope_and_spans() {
        let m = msg(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#);
        assert_eq!(m.kind(), Kind::Request);
        assert_eq!(m.id_str(), Some("7"));
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.params(), Some(r#"{"name":"x"}"#));
    }

    #[test]
    fn id_swap_keeps_every_other_byte() {
        let src = r#"{ "jsonrpc" : "2.0", "id" : "a\u00e9", "method":"x/y", "params":{"big":123456789012345678901234567890,"_meta":{"k":[1,2.50,"\ud83d\ude00"]}},"zz":{"unknown":true} }"#;
        let m = msg(src);
        let swapped = m.with_id("18446744073709551615");
        let expected = src.replace(r#""a\u00e9""#, "18446744073709551615");
        assert_eq!(std::str::from_utf8(swapped.bytes()).unwrap(), expected);
        assert_eq!(swapped.method(), Some("x/y"));
        assert!(swapped
            .params()
            .unwrap()
            .contains("123456789012345678901234567890"));
        let back = swapped.with_id(r#""a\u00e9""#);
        assert_eq!(std::str::from_utf8(back.bytes()).unwrap(), src);
    }

    #[test]
    fn the_version_is_compared_as_json_text() {
        assert!(Message::parse(Bytes::from_static(
            br#"{"jsonrpc":"2\u002e0","method":"n"}"#
        ))
        .is_ok());
        for bad in [r#""2.0 ""#, "2.0", "null", r#""2\u002e1""#] {
            let raw = format!(r#"{{"jsonrpc":{bad},"method":"n"}}"#);
            assert!(Message::parse(Bytes::from(raw)).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(
            msg(r#"{"jsonrpc":"2.0","method":"n"}"#).kind(),
            Kind::Notification
        );
        assert_eq!(
            msg(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).kind(),
            Kind::Response
        );
        assert_eq!(
            msg(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#).kind(),
            Kind::Response
        );
    }

    #[test]
    fn rejects_bad_messages() {
        for bad in [
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","method":5}"#,
            r#"[1,2"#,
            "not json",
        ] {
            assert!(
                Message::parse(Bytes::copy_from_slice(bad.as_bytes())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn batches_are_split_raw() {
        let raw = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"method":"a"}, 5, {"jsonrpc":"2.0","method":"b"}]"#,
        );
        let Payload::Batch(items) = parse_payload(raw).unwrap() else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().method(), Some("a"));
        assert!(items[1].is_err());
        assert_eq!(items[2].as_ref().unwrap().kind(), Kind::Notification);
    }

    #[test]
    fn built_errors_keep_big_ids() {
        let e = error_response(Some("123456789012345678901234567890"), -32601, "nope");
        assert_eq!(e.id_str(), Some("123456789012345678901234567890"));
        assert_eq!(e.kind(), Kind::Response);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = parse_payload(Bytes::copy_from_slice(s.as_bytes()));
        }

        #[test]
        fn id_roundtrip_is_identity(id in 0u64.., text in "[a-z\\\\\"é]{0,20}") {
            let src = serde_json::json!({"jsonrpc":"2.0","id":"x","method":"m","params":{"t":text}}).to_string();
            let m = msg(&src);
            let back = m.with_id(&id.to_string()).with_id("\"x\"");
            proptest::prop_assert_eq!(back.bytes().as_ref(), src.as_bytes());
        }
    }
}
