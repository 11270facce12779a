//! Server-Sent Events: an incremental parser (for upstream streams) and the encoder used by the
//! Streamable HTTP front.
//!
//! Follows the WHATWG event-stream rules: lines end in LF, CRLF or CR; `:` starts a comment;
//! `data` lines join with `\n`; an event is dispatched at a blank line; a leading BOM is dropped.

// Untrusted bytes pass through here: an index that could be out of range would be a panic an
// agent or a server can trigger. Use `get`, or say why the index is in range.
#![warn(clippy::indexing_slicing)]

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// Feed bytes with [`Parser::push`]; complete events come out. Bounded: a single event larger
/// than `max` bytes is dropped (reported by [`Parser::overflowed`]).
pub struct Parser {
    buf: Vec<u8>,
    started: bool,
    pending_cr: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    size: usize,
    max: usize,
    overflowed: bool,
}

impl Parser {
    pub fn new(max: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            started: false,
            pending_cr: false,
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            retry: None,
            size: 0,
            max,
            overflowed: false,
        }
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) {
        if !self.started && !chunk.is_empty() {
            // Strip a UTF-8 BOM, possibly split across chunks (rare; handled for whole BOMs).
            if chunk.starts_with(&[0xEF, 0xBB, 0xBF]) {
                chunk = chunk.get(3..).unwrap_or_default();
            }
            self.started = true;
        }
        for &b in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.line(out),
                b'\r' => {
                    self.pending_cr = true;
                    self.line(out);
                }
                _ => {
                    if self.buf.len() < self.max {
                        self.buf.push(b);
                    } else {
                        self.overflowed = true;
                    }
                }
            }
        }
    }

    fn line(&mut self, out: &mut Vec<Event>) {
        let line = std::mem::take(&mut self.buf);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        self.size += value.len();
        if self.size > self.max {
            self.overflowed = true;
            return;
        }
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "retry" => self.retry = value.parse().ok(),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let too_big = self.size > self.max;
        self.size = 0;
        let event = self.event.take();
        let retry = self.retry.take();
        if !self.has_data || too_big {
            // An id-only event still updates the last event id (priming events).
            if let Some(id) = self.id.take() {
                out.push(Event {
                    id: Some(id),
                    event,
                    data: String::new(),
                    retry,
                });
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        self.has_data = false;
        out.push(Event {
            id: self.id.take(),
            event,
            data: std::mem::take(&mut self.data),
            retry,
        });
    }
}

/// Encodes one SSE event carrying a JSON-RPC message (which never contains a raw newline: JSON
/// escapes them inside strings, and mcp-warden never forwards pretty-printed messages unsplit).
pub fn encode(id: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: message\n");
    // Split on line breaks so that a multi-line payload stays one event.
    for line in data.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new(1 << 20);
        let mut out = vec![];
        for c in chunks {
            p.push(c, &mut out);
        }
        out
    }

    #[test]
    fn basic_events_and_line_endings() {
        let ev = parse_all(&[b"event: endpoint\r\ndata: /messages?s=1\r\n\r\n: comment\n\nid: 7\ndata: a\ndata: b\n\n"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event.as_deref(), Some("endpoint"));
        assert_eq!(ev[0].data, "/messages?s=1");
        assert_eq!(ev[1].id.as_deref(), Some("7"));
        assert_eq!(ev[1].data, "a\nb");
    }

    #[test]
    fn split_anywhere_gives_same_events() {
        let whole: &[u8] = b"id: 1\rdata: {\"x\":1}\r\n\r\ndata:no-space\n\nid: 2\ndata:\n\n";
        let expect = parse_all(&[whole]);
        assert_eq!(expect.len(), 3);
        for i in 0..whole.len() {
            assert_eq!(
                parse_all(&[&whole[..i], &whole[i..]]),
                expect,
                "split at {i}"
            );
        }
    }

    #[test]
    fn priming_event_keeps_id() {
        let ev = parse_all(&[b"id: prime-0\ndata:\n\n"]);
        assert_eq!(ev[0].id.as_deref(), Some("prime-0"));
        assert_eq!(ev[0].data, "");
    }

    #[test]
    fn encode_roundtrips() {
        let enc = encode(Some("s-3"), br#"{"a":"b\nc"}"#);
        let ev = parse_all(&[&enc]);
        assert_eq!(ev[0].data, r#"{"a":"b\nc"}"#);
        assert_eq!(ev[0].id.as_deref(), Some("s-3"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_split_invariant(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), cut in 0usize..200) {
            let cut = cut.min(data.len());
            let a = parse_all(&[&data]);
            let b = parse_all(&[&data[..cut], &data[cut..]]);
            // A CR at the cut followed by LF is the only case that can differ; both are legal.
            if !(cut > 0 && data[cut - 1] == b'\r') {
                proptest::prop_assert_eq!(a, b);
            }
        }
    }
}
