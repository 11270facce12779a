//! A look at JSON text that mcp-warden refuses to parse — nested too deep, or a line over the
//! limit — so that the refusal can still be answered under the message's `id` instead of
//! leaving its sender (an agent, or a pending call waiting for an upstream) hanging until a
//! timeout.
//!
//! Owns: nesting depth ([`too_deep`]) and a one-pass, incremental, constant-memory scan of the
//! top level ([`Skim`]): the raw `id` member and whether there is a `method`. Must not: build
//! anything from what it reads beyond those few bytes.

/// How deep JSON may nest anywhere in a message. serde_json's own tree parser stops at 128,
/// so nothing deeper could be read by mcp-warden's views of the messages it changes; what is
/// only forwarded is held to the same limit, so that no peer receives a value the proxy itself
/// could not have read.
pub const MAX_DEPTH: u32 = 128;

/// Whether `text` nests arrays and objects deeper than `limit` (strings skipped, escapes
/// honoured). Malformed text is not judged here: the parser reports it.
pub fn too_deep(text: &[u8], limit: u32) -> bool {
    // Nesting deeper than `limit` needs more than `limit` opening brackets: most messages have
    // far fewer, and counting them (SIMD) costs a fraction of the walk below.
    if memchr::memchr2_iter(b'[', b'{', text)
        .nth(limit as usize)
        .is_none()
    {
        return false;
    }
    let mut depth = 0u32;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                i += 1;
                loop {
                    let rest = text.get(i..).unwrap_or_default();
                    match memchr::memchr2(b'"', b'\\', rest) {
                        Some(j) if rest.get(j) == Some(&b'\\') => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                        None => return false,
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// The longest `id` text kept (ids are short; a longer one is not answered under).
const MAX_ID: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Method,
    Other,
}

/// Reads a JSON-RPC message's top level in pieces ([`Skim::feed`]) without keeping it.
pub struct Skim {
    depth: u32,
    in_string: bool,
    escaped: bool,
    expect_key: bool,
    /// Inside a top-level key: its first bytes.
    key: Option<([u8; 8], usize)>,
    last_key: Key,
    capturing_id: bool,
    id: Vec<u8>,
    id_done: bool,
    id_bad: bool,
    has_method: bool,
}

impl Default for Skim {
    fn default() -> Self {
        Skim {
            depth: 0,
            in_string: false,
            escaped: false,
            expect_key: false,
            key: None,
            last_key: Key::Other,
            capturing_id: false,
            id: Vec::new(),
            id_done: false,
            id_bad: false,
            has_method: false,
        }
    }
}

impl Skim {
    /// Skims all of `text` at once.
    pub fn of(text: &[u8]) -> Skim {
        let mut s = Skim::default();
        s.feed(text);
        s
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if self.capturing_id && (self.in_string || !b.is_ascii_whitespace()) {
            if self.id.len() < MAX_ID {
                self.id.push(b);
            } else {
                self.id_bad = true;
            }
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
                // Keys written with escapes are not `id` or `method` as MCP peers write them.
                if let Some((_, n)) = &mut self.key {
                    *n = usize::MAX;
                }
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if let Some((k, n)) = self.key.take() {
                    self.last_key = match k.get(..n.min(8)).unwrap_or_default() {
                        b"id" if n == 2 => Key::Id,
                        b"method" if n == 6 => Key::Method,
                        _ => Key::Other,
                    };
                }
            } else if let Some((k, n)) = &mut self.key {
                if let Some(slot) = k.get_mut(*n) {
                    *slot = b;
                }
                *n = n.saturating_add(1);
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.expect_key {
                    self.key = Some(([0; 8], 0));
                    self.expect_key = false;
                }
            }
            b'{' | b'[' => {
                self.depth = self.depth.saturating_add(1);
                if self.depth == 1 {
                    self.expect_key = b == b'{';
                }
                if self.capturing_id {
                    self.id_bad = true;
                }
            }
            b'}' | b']' => {
                if self.depth == 1 {
                    self.end_value();
                }
                self.depth = self.depth.saturating_sub(1);
            }
            b',' if self.depth == 1 => {
                self.end_value();
                self.expect_key = true;
            }
            b':' if self.depth == 1 => match self.last_key {
                Key::Id if !self.id_done => {
                    self.capturing_id = true;
                    self.id.clear();
                }
                Key::Method => self.has_method = true,
                _ => {}
            },
            _ => {}
        }
    }

    fn end_value(&mut self) {
        if self.capturing_id {
            self.capturing_id = false;
            self.id_done = true;
            // The delimiter that ended the value was captured with it.
            self.id.pop();
        }
    }

    /// The raw text of the top-level `id`, when it is a string or a number.
    pub fn id(&self) -> Option<&str> {
        if !self.id_done || self.id_bad {
            return None;
        }
        let s = std::str::from_utf8(&self.id).ok()?;
        let ok = match s.as_bytes().first()? {
            b'"' => s.len() >= 2 && s.ends_with('"'),
            b'-' | b'0'..=b'9' => s
                .bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')),
            _ => false,
        };
        ok.then_some(s)
    }

    /// A `method` member was seen at the top level: a request or notification, not an answer.
    pub fn has_method(&self) -> bool {
        self.has_method
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn depth_counts_arrays_and_objects_not_strings() {
        assert!(!too_deep(br#"{"a":[{"b":1}]}"#, 3));
        assert!(too_deep(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!too_deep(br#"{"a":"[[[[[[[[\"[[[["}"#, 1));
        assert!(!too_deep(br#"{"a":"unterminated"#, 1));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(too_deep(deep.as_bytes(), MAX_DEPTH));
    }

    #[test]
    fn finds_the_top_level_id_wherever_it_is() {
        let s = Skim::of(br#"{"jsonrpc":"2.0","id":42,"result":{"id":"inner"}}"#);
        assert_eq!(s.id(), Some("42"));
        assert!(!s.has_method());
        let s = Skim::of(br#"{"result":{"id":7,"x":"\"id\":9"},"jsonrpc":"2.0","id" : "a,b}" }"#);
        assert_eq!(s.id(), Some(r#""a,b}""#));
        let s = Skim::of(br#"{"jsonrpc":"2.0","method":"tools/call","id":-3,"params":[[[]]]}"#);
        assert_eq!(s.id(), Some("-3"));
        assert!(s.has_method());
        assert_eq!(Skim::of(br#"{"id":{"x":1}}"#).id(), None);
        assert_eq!(Skim::of(br#"{"id":null}"#).id(), None);
        assert_eq!(Skim::of(br#"{"i\u0064":1}"#).id(), None);
    }

    #[test]
    fn fed_in_pieces_it_finds_the_same() {
        let text =
            br#"{"result":{"content":[{"type":"text","text":"xx"}]},"jsonrpc":"2.0","id":12345}"#;
        for cut in 0..text.len() {
            let mut s = Skim::default();
            s.feed(&text[..cut]);
            s.feed(&text[cut..]);
            assert_eq!(s.id(), Some("12345"), "cut at {cut}");
        }
    }

    proptest! {
        /// On any valid JSON-RPC message the skim finds the id serde finds.
        #[test]
        fn agrees_with_serde(id in prop_oneof![any::<i64>().prop_map(|i| i.to_string()), "[a-z ,:{}\\[\\]]{0,12}".prop_map(|s| serde_json::Value::String(s).to_string())],
                             inner in "[a-z\"{}:,\\[\\] ]{0,20}",
                             first in any::<bool>()) {
            let result = serde_json::json!({"t": inner, "id": "inner"}).to_string();
            let text = if first {
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
            } else {
                format!(r#"{{"result":{result}, "jsonrpc":"2.0", "id": {id}}}"#)
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let s = Skim::of(text.as_bytes());
            prop_assert_eq!(s.id().map(|i| serde_json::from_str::<serde_json::Value>(i).unwrap()), Some(v["id"].clone()));
        }
    }
}
