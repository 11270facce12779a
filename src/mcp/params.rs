//! A request's `params`, read once: the members mcp-warden routes, checks and rewrites by, as
//! byte ranges of the message. The front that reads a request and the session that serves it
//! share this one pass over text that may carry large arguments: a 2026-07-28 front reads it
//! to validate `_meta`, edits the request ([`Params::moved`] follows the edits) and hands both
//! on; the session reads it itself for a 2025 request.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::jsonrpc::Message;

/// A member's value: a byte range of the message.
pub use crate::jsonrpc::Span as At;

/// What a request's `params` says that mcp-warden reads. Members absent (or `null`) are
/// `None`; so is everything when `params` is not an object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Params {
    pub name: Option<At>,
    pub uri: Option<At>,
    pub task_id: Option<At>,
    pub arguments: Option<At>,
    /// A 2026-07-28 retry's `requestState`.
    pub request_state: Option<At>,
    /// `_meta` is present and an object.
    pub meta: bool,
    pub progress_token: Option<At>,
    /// 2026-07-28's per-request envelope (`io.modelcontextprotocol/…`).
    pub protocol_version: Option<At>,
    pub client_capabilities: Option<At>,
    pub log_level: Option<At>,
    /// A member read here that appears twice (which one a server would take is anyone's
    /// guess): the request is refused where that matters, and nothing else of it is read.
    pub twice: Option<&'static str>,
}

/// The members read, borrowed from the text being read.
#[derive(Default)]
struct Raw<'a> {
    name: Option<&'a RawValue>,
    uri: Option<&'a RawValue>,
    task_id: Option<&'a RawValue>,
    arguments: Option<&'a RawValue>,
    request_state: Option<&'a RawValue>,
    meta: bool,
    progress_token: Option<&'a RawValue>,
    protocol_version: Option<&'a RawValue>,
    client_capabilities: Option<&'a RawValue>,
    log_level: Option<&'a RawValue>,
    twice: Option<&'static str>,
}

/// A key, borrowed unless it has escapes (`Cow` alone always owns).
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl Params {
    /// Reads `msg`'s `params` (nothing when it has none or they are not an object).
    pub fn of(msg: &Message) -> Params {
        let Some(text) = msg.params() else {
            return Params::default();
        };
        let mut raw = Raw::default();
        let read =
            serde_json::Deserializer::from_str(text).deserialize_map(ParamsVisitor(&mut raw));
        if read.is_err() {
            return Params {
                twice: raw.twice,
                ..Params::default()
            };
        }
        let at = |v: Option<&RawValue>| v.map(|v| At::of(msg.span_of(v.get())));
        Params {
            name: at(raw.name),
            uri: at(raw.uri),
            task_id: at(raw.task_id),
            arguments: at(raw.arguments),
            request_state: at(raw.request_state),
            meta: raw.meta,
            progress_token: at(raw.progress_token),
            protocol_version: at(raw.protocol_version),
            client_capabilities: at(raw.client_capabilities),
            log_level: at(raw.log_level),
            twice: None,
        }
    }

    /// The raw JSON text of a member read here, in `msg` (the message it was read from, or
    /// the one [`Params::moved`] followed the edits to).
    pub fn text(msg: &Message, at: Option<At>) -> Option<&str> {
        msg.text_at(at?.range())
    }

    /// These ranges in the message that `edits` make of this one (see
    /// [`Message::with_edits`]); the edits must not cut a member read here.
    pub fn moved(&self, edits: &[(Range<usize>, &str)]) -> Params {
        let m = |a: Option<At>| {
            a.map(|a| {
                let r = a.range();
                At::of(
                    crate::jsonrpc::moved(edits, r.start, false)
                        ..crate::jsonrpc::moved(edits, r.end, true),
                )
            })
        };
        Params {
            name: m(self.name),
            uri: m(self.uri),
            task_id: m(self.task_id),
            arguments: m(self.arguments),
            request_state: m(self.request_state),
            meta: self.meta,
            progress_token: m(self.progress_token),
            protocol_version: m(self.protocol_version),
            client_capabilities: m(self.client_capabilities),
            log_level: m(self.log_level),
            twice: self.twice,
        }
    }
}

fn once<'a, E: serde::de::Error>(
    twice: &mut Option<&'static str>,
    what: &'static str,
    slot: &mut Option<&'a RawValue>,
    v: Option<&'a RawValue>,
) -> Result<(), E> {
    if slot.is_some() {
        *twice = Some(what);
        return Err(E::custom("a member appears twice"));
    }
    *slot = v;
    Ok(())
}

struct ParamsVisitor<'r, 'a>(&'r mut Raw<'a>);

impl<'de> Visitor<'de> for ParamsVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let r = self.0;
        let mut seen_meta = false;
        while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
            match &*k {
                "name" => once(&mut r.twice, "name", &mut r.name, a.next_value()?)?,
                "uri" => once(&mut r.twice, "uri", &mut r.uri, a.next_value()?)?,
                "taskId" => once(&mut r.twice, "taskId", &mut r.task_id, a.next_value()?)?,
                "arguments" => once(&mut r.twice, "arguments", &mut r.arguments, a.next_value()?)?,
                "requestState" => once(
                    &mut r.twice,
                    "requestState",
                    &mut r.request_state,
                    a.next_value()?,
                )?,
                "_meta" => {
                    if seen_meta {
                        r.twice = Some("_meta");
                        return Err(A::Error::custom("a member appears twice"));
                    }
                    seen_meta = true;
                    a.next_value_seed(MetaSeed(r))?;
                }
                _ => {
                    a.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `_meta`: its reserved members when it is an object; any other value is skipped.
struct MetaSeed<'r, 'a>(&'r mut Raw<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for MetaSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let r = self.0;
        r.meta = true;
        while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
            let (what, slot) = match &*k {
                "progressToken" => ("progressToken", &mut r.progress_token),
                super::META_PROTOCOL_VERSION => {
                    (super::META_PROTOCOL_VERSION, &mut r.protocol_version)
                }
                super::META_CLIENT_CAPABILITIES => {
                    (super::META_CLIENT_CAPABILITIES, &mut r.client_capabilities)
                }
                super::META_LOG_LEVEL => (super::META_LOG_LEVEL, &mut r.log_level),
                _ => {
                    a.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            once(&mut r.twice, what, slot, a.next_value()?)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.to_string())).unwrap()
    }

    #[test]
    fn one_pass_reads_what_routing_and_the_envelope_need() {
        let m = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"x":[{"name":"no"}],"name":"t","arguments":{"a":1},"_meta":{"progressToken":"p","k":{"progressToken":0},"io.modelcontextprotocol\/logLevel":"info"}}}"#,
        );
        let p = Params::of(&m);
        assert_eq!(Params::text(&m, p.name), Some(r#""t""#));
        assert_eq!(Params::text(&m, p.arguments), Some(r#"{"a":1}"#));
        assert_eq!(Params::text(&m, p.progress_token), Some(r#""p""#));
        assert_eq!(
            Params::text(&m, p.log_level),
            Some(r#""info""#),
            "an escaped key is that key"
        );
        assert!(p.meta && p.uri.is_none() && p.protocol_version.is_none());
    }

    #[test]
    fn a_member_read_twice_makes_nothing_readable() {
        for (params, what) in [
            r#"{"name":"a","name":"b"}"#,
            r#"{"_meta":{},"name":"a","_meta":{}}"#,
            r#"{"_meta":{"progressToken":1,"progressToken":2}}"#,
        ]
        .iter()
        .zip(["name", "_meta", "progressToken"])
        {
            let m = msg(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{params}}}"#
            ));
            let p = Params::of(&m);
            assert_eq!(p.twice, Some(what));
            assert!(p.name.is_none() && p.progress_token.is_none());
        }
    }

    #[test]
    fn meta_that_is_not_an_object_leaves_the_rest_readable() {
        for meta in ["5", "null", "[1,{}]", r#""s""#, "true"] {
            let m = msg(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"_meta":{meta},"name":"n"}}}}"#
            ));
            let p = Params::of(&m);
            assert_eq!(Params::text(&m, p.name), Some(r#""n""#), "{meta}");
            assert!(!p.meta);
        }
        let array = msg(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":["n"]}"#);
        assert!(
            Params::of(&array).name.is_none(),
            "positional params name nothing"
        );
    }

    #[test]
    fn the_ranges_follow_the_edits() {
        let m = msg(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"v":1,"progressToken":5},"name":"t"}}"#,
        );
        let p = Params::of(&m);
        let raw = std::str::from_utf8(m.bytes()).unwrap();
        let gone = raw.find(r#""v":1,"#).unwrap();
        let edits = [
            (m.span_of(m.id_str().unwrap()), r#""mw-1""#),
            (gone..gone + 6, ""),
            (p.progress_token.unwrap().range(), r#""mw-1""#),
        ];
        let e = m.with_edits(&edits);
        let q = p.moved(&edits);
        assert_eq!(Params::text(&e, q.name), Some(r#""t""#));
        assert_eq!(Params::text(&e, q.progress_token), Some(r#""mw-1""#));
    }
}
