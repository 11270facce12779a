//! The little of MCP that mcp-warden must understand: protocol versions, the headers of the
//! Streamable HTTP transport, and borrowed views of the messages it intercepts.
//!
//! Must not: hold state or do I/O. Everything not named here is forwarded untouched.

// Untrusted bytes pass through here: an index that could be out of range would be a panic an
// agent or a server can trigger. Use `get`, or say why the index is in range.
#![warn(clippy::indexing_slicing)]

/// Parameters never advertised to an agent (the consent envelope's token), removed from every
/// schema and never pinned or hidden by a config.
pub const NEVER_ADVERTISED: &[&str] = &["confirmation_token"];

/// Tool names every LLM provider accepts: `^[a-zA-Z0-9_-]{1,64}$`.
pub mod header_params;
pub mod params;

pub mod names {
    pub const MAX_LEN: usize = 64;

    /// A byte every provider accepts in a tool name.
    pub fn safe_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
    }

    /// True if `s` is acceptable to every provider as a tool name.
    pub fn is_provider_safe(s: &str) -> bool {
        !s.is_empty() && s.len() <= MAX_LEN && s.bytes().all(safe_byte)
    }
}

use serde::Deserialize;
use serde_json::value::RawValue;

/// Protocol revisions mcp-warden speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_VERSION: &str = "2025-11-25";
/// What a Streamable HTTP request without `MCP-Protocol-Version` is assumed to speak.
pub const DEFAULT_HTTP_VERSION: &str = "2025-03-26";

pub const HEADER_SESSION_ID: &str = "mcp-session-id";
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// Revisions served statelessly (no `initialize`; every request names its version and the
/// client's capabilities in `params._meta`), newest last.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// The `params._meta` keys a modern request describes itself with.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// The body member a 2026-07-28 request's `Mcp-Name` header repeats, for the methods that
/// name something: a tool or prompt, a resource, a task (the tasks extension).
pub fn named_member(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The 2026-07-28 tasks extension's identifier (in `capabilities.extensions`).
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// Modern routing headers: they repeat the body, and a request whose headers disagree with
/// it is refused.
pub const HEADER_METHOD: &str = "mcp-method";
pub const HEADER_NAME: &str = "mcp-name";

/// A header value carrying `v` as 2026-07-28 says (`Mcp-Name`, `Mcp-Param-*`): as it is when
/// it is printable ASCII without surrounding whitespace (and does not look encoded), else
/// `=?base64?…?=` of its UTF-8.
pub fn header_value_encode(v: &str) -> String {
    use base64::Engine;
    let looks_encoded = v.starts_with("=?base64?") && v.ends_with("?=");
    let printable = v.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = v.starts_with([' ', '\t']) || v.ends_with([' ', '\t']);
    if printable && !v.is_empty() && !padded && !looks_encoded {
        return v.to_string();
    }
    format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(v)
    )
}

/// A header value as the body would have it: surrounding whitespace dropped; a value of the
/// form `=?base64?…?=` decoded (`None` when that is not valid, canonically padded base64 of
/// UTF-8 text); anything else is literal.
pub fn header_value_decode(v: &str) -> Option<String> {
    use base64::Engine;
    let v = v.trim_matches([' ', '\t']);
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(v.to_string()),
    }
}

/// Whether a version string names a modern revision (known or not: a client asking for a
/// future one gets a structured refusal, not a legacy answer).
pub fn is_modern(v: &str) -> bool {
    !SUPPORTED_VERSIONS.contains(&v)
}

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

/// The members of a listed item that mcp-warden needs, as raw JSON text (slices of the item):
/// `name` (tools, prompts), `uri` (resources), `uriTemplate` (templates), and for tools
/// `inputSchema` and the `description` and `title` a rewrite may replace.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ItemKey<'a> {
    pub name: Option<&'a str>,
    pub uri: Option<&'a str>,
    pub uri_template: Option<&'a str>,
    pub input_schema: Option<&'a str>,
    /// `input_schema` is one that the Anthropic profile leaves as it is
    /// ([`is_plain_object_schema`]), found in the same pass.
    pub plain_schema: bool,
    /// As written, `null` included (unlike the members above, where `null` counts as absent);
    /// the first if there are several.
    pub description: Option<&'a str>,
    pub title: Option<&'a str>,
    /// `description` or `title` appears more than once.
    pub repeated: bool,
}

impl<'a> ItemKey<'a> {
    /// Finds the members in one pass over the item's bytes, building nothing. The item comes
    /// from a page serde_json has already validated; anything that is not a JSON object, or
    /// that names one of these members twice (serde refuses such objects too), gives `None`.
    /// With `check_schema`, `inputSchema` is also checked for `plain_schema` (as it is read, at
    /// a small cost); without, `plain_schema` stays false.
    pub fn scan(text: &'a str, check_schema: bool) -> Option<ItemKey<'a>> {
        let raw = text.as_bytes();
        let mut members = Members::at(text, skip_ws(raw, 0))?;
        let mut key = ItemKey::default();
        let mut seen = 0u8;
        while let Some(name) = members.next_key()? {
            let value = if check_schema && name == "\"inputSchema\"" {
                // Walked member by member rather than skipped: the profile check comes free.
                let start = members.end;
                let (plain, end) = schema_at(text, start)?;
                members.past_value(end)?;
                key.plain_schema = plain;
                &text[start..end]
            } else {
                members.skip()?
            };
            let member = match name {
                "\"name\"" => Some(0),
                "\"uri\"" => Some(1),
                "\"uriTemplate\"" => Some(2),
                "\"inputSchema\"" => Some(3),
                "\"description\"" => Some(4),
                "\"title\"" => Some(5),
                // A key written with escapes may still be one of ours.
                n if n.contains('\\') => match serde_json::from_str::<String>(n).ok()?.as_str() {
                    "name" => Some(0),
                    "uri" => Some(1),
                    "uriTemplate" => Some(2),
                    "inputSchema" => Some(3),
                    "description" => Some(4),
                    "title" => Some(5),
                    _ => None,
                },
                _ => None,
            };
            if let Some(m) = member {
                if seen & (1 << m) != 0 {
                    if m >= 4 {
                        // Texts only shown: the item stays, rewrites take the general path.
                        key.repeated = true;
                        continue;
                    }
                    return None; // a duplicate member
                }
                seen |= 1 << m;
                match m {
                    4 => key.description = Some(value),
                    5 => key.title = Some(value),
                    _ => {}
                }
                // `null` is as good as absent (as for serde's `Option`).
                let value = (value != "null").then_some(value);
                match m {
                    0 => key.name = value,
                    1 => key.uri = value,
                    2 => key.uri_template = value,
                    3 => {
                        key.input_schema = value;
                        key.plain_schema &= value.is_some();
                    }
                    _ => {}
                }
            }
        }
        (skip_ws(raw, members.end) == raw.len()).then_some(key)
    }
}

/// A cursor over the members of one JSON object in raw text, building nothing: `next_key`
/// gives each key (quotes included), then `skip` or `plain_members` reads its value. Every
/// step returns `None` when the text is not well-formed there.
pub(crate) struct Members<'a> {
    text: &'a str,
    /// The next byte to read; just past the closing brace once the object is done.
    end: usize,
    done: bool,
}

impl<'a> Members<'a> {
    /// The object whose opening brace is at `text[i]`.
    pub(crate) fn at(text: &'a str, i: usize) -> Option<Self> {
        let b = text.as_bytes();
        if b.get(i) != Some(&b'{') {
            return None;
        }
        let j = skip_ws(b, i + 1);
        let done = b.get(j) == Some(&b'}');
        Some(Self {
            text,
            end: if done { j + 1 } else { j },
            done,
        })
    }

    /// The next key, the cursor left on its value; `Some(None)` at the end of the object.
    pub(crate) fn next_key(&mut self) -> Option<Option<&'a str>> {
        if self.done {
            return Some(None);
        }
        let b = self.text.as_bytes();
        if b.get(self.end) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, self.end)?;
        let key = &self.text[self.end..key_end];
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        self.end = skip_ws(b, colon + 1);
        Some(Some(key))
    }

    /// The current value as raw text.
    pub(crate) fn skip(&mut self) -> Option<&'a str> {
        let start = self.end;
        let end = skip_value(self.text.as_bytes(), start)?;
        self.past_value(end)?;
        Some(&self.text[start..end])
    }

    /// Moves past the value ending at `end` and the comma or closing brace after it.
    pub(crate) fn past_value(&mut self, end: usize) -> Option<()> {
        let b = self.text.as_bytes();
        let i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => self.end = skip_ws(b, i + 1),
            Some(b'}') => {
                self.end = i + 1;
                self.done = true;
            }
            _ => return None,
        }
        Some(())
    }
}

/// Objects with more members than this are left to the general path.
pub const PLAIN_MEMBERS_MAX: usize = 64;

/// The members of a JSON object as raw text, in their order: `(key, value)`, the key with its
/// quotes. `None` when `text` is not an object, or when a key is written with escapes or
/// appears twice, or when there are more than [`PLAIN_MEMBERS_MAX`] members (duplicates are
/// found by comparing keys pairwise): callers then take a path that decodes everything.
/// `text` must be valid JSON (it comes from a message serde_json has already checked).
pub fn plain_members(text: &str) -> Option<Vec<(&str, &str)>> {
    let b = text.as_bytes();
    let (members, end) = members_at(text, skip_ws(b, 0))?;
    (skip_ws(b, end) == text.len()).then_some(members)
}

/// [`plain_members`] of the object starting at `text[i]`, and the index just past it.
pub(crate) fn members_at(text: &str, i: usize) -> Option<(Vec<(&str, &str)>, usize)> {
    let mut members = Members::at(text, i)?;
    let mut out: Vec<(&str, &str)> = Vec::new();
    while let Some(key) = members.next_key()? {
        if key.contains('\\')
            || out.len() == PLAIN_MEMBERS_MAX
            || out.iter().any(|(k, _)| *k == key)
        {
            return None;
        }
        out.push((key, members.skip()?));
    }
    Some((out, members.end))
}

/// Whether `text` is an input schema that the Anthropic profile leaves exactly as it is:
/// `"type": "object"`, an object of `properties`, every `required` key among them (once), and no
/// `anyOf` / `oneOf` / `allOf` / `$schema` / `$ref` at the root. Anything the scan cannot read
/// plainly (escaped or duplicate keys) gives `false`. One pass over the text.
pub fn is_plain_object_schema(text: &str) -> bool {
    let b = text.as_bytes();
    schema_at(text, skip_ws(b, 0))
        .is_some_and(|(plain, end)| plain && skip_ws(b, end) == text.len())
}

/// Reads the value at `text[i]` as an input schema: whether it is plain (as
/// [`is_plain_object_schema`] says) and the index just past it. `None` only when the text is
/// not well-formed there; a value that is not a plain schema is still read to its end.
fn schema_at(text: &str, i: usize) -> Option<(bool, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'{') {
        return Some((false, skip_value(b, i)?));
    }
    let mut members = Members::at(text, i)?;
    let mut plain = true;
    let (mut kind, mut required) = (None, None);
    // The keys of `properties`, once read: what `required` must name.
    let mut properties: Option<KeySet<'_>> = None;
    let mut keys = 0;
    while let Some(key) = members.next_key()? {
        keys += 1;
        if keys > PLAIN_MEMBERS_MAX || key.contains('\\') {
            plain = false;
        }
        match key {
            "\"properties\"" if plain && properties.is_none() => {
                let (found, end) = plain_keys_at(text, members.end)?;
                members.past_value(end)?;
                match found {
                    Some(set) => properties = Some(set),
                    // Escaped or repeated keys, too many, or not an object.
                    None => plain = false,
                }
            }
            "\"type\"" if kind.is_none() => kind = Some(members.skip()?),
            "\"required\"" if required.is_none() => required = Some(members.skip()?),
            // A second `properties`, `type` or `required`, or a keyword the profile rewrites.
            "\"properties\"" | "\"type\"" | "\"required\"" | "\"anyOf\"" | "\"oneOf\""
            | "\"allOf\"" | "\"$schema\"" | "\"$ref\"" => {
                plain = false;
                members.skip()?;
            }
            _ => {
                members.skip()?;
            }
        }
    }
    let end = members.end;
    let Some(properties) = properties.filter(|_| plain) else {
        return Some((false, end));
    };
    let all_required_defined = match required {
        None => true,
        // Each a defined key, named once (the profile drops repeated names).
        Some(r) => {
            let mut named = KeySet::default();
            array_at(r, skip_ws(r.as_bytes(), 0), |start| {
                let end = skip_value(r.as_bytes(), start)?;
                let item = &r[start..end];
                (item.starts_with('"') && properties.contains(item) && named.insert(item))
                    .then_some(end)
            })
            .is_some()
        }
    };
    Some((kind == Some("\"object\"") && all_required_defined, end))
}

/// A set of raw keys that lives on the stack while it is small (schemas rarely have more than
/// a dozen properties): the profile check allocates nothing for them.
#[derive(Default)]
pub(crate) struct KeySet<'a> {
    first: [&'a str; 16],
    len: usize,
    more: Vec<&'a str>,
}

impl<'a> KeySet<'a> {
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.first.iter().take(self.len).any(|k| *k == key) || self.more.contains(&key)
    }

    /// Adds `key`; false if it was already there.
    pub(crate) fn insert(&mut self, key: &'a str) -> bool {
        if self.contains(key) {
            return false;
        }
        match self.first.get_mut(self.len) {
            Some(slot) => *slot = key,
            None => self.more.push(key),
        }
        self.len += 1;
        true
    }
}

/// The keys of the object value at `text[i]` and the index just past it: `Some(keys)` when it
/// is an object of at most [`PLAIN_MEMBERS_MAX`] members whose keys have no escapes and are
/// all different, else `None` (the value is still read to its end). The outer `None`: the
/// text is not well-formed there.
fn plain_keys_at(text: &str, i: usize) -> Option<(Option<KeySet<'_>>, usize)> {
    let Some(mut members) = Members::at(text, i) else {
        return Some((None, skip_value(text.as_bytes(), i)?));
    };
    let mut keys = Some(KeySet::default());
    while let Some(key) = members.next_key()? {
        if let Some(set) = &mut keys {
            if key.contains('\\') || set.len == PLAIN_MEMBERS_MAX || !set.insert(key) {
                keys = None;
            }
        }
        members.skip()?;
    }
    Some((keys, members.end))
}

/// Reads the array starting at `text[i]`: `item` is called with where each item starts and
/// reads it, returning where it ends. Gives the index just past the array; `None` when it is
/// not an array or `item` gives up.
pub(crate) fn array_at(
    text: &str,
    i: usize,
    mut item: impl FnMut(usize) -> Option<usize>,
) -> Option<usize> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        let end = item(i)?;
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Skips the whitespace at `b[i..]`: where the next token starts.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is the opening quote of a string: the index just past its closing quote.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    // Most strings of a listing (keys, types, names) are short: a plain loop finds their end
    // sooner than setting up a vector search.
    let short = b.len().min(j + 24);
    while j < short {
        match b.get(j) {
            Some(b'"') => return Some(j + 1),
            Some(b'\\') => j += 2,
            _ => j += 1,
        }
    }
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b.get(j) == Some(&b'"') {
            return Some(j + 1);
        }
        j += 2; // an escape: the backslash and the character it escapes
    }
}

/// Bytes that matter when skipping a container: 1 opens, 2 closes, 3 starts a string.
#[allow(clippy::indexing_slicing)] // constant indices into a 256-entry table, at compile time
static STRUCTURAL: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'{' as usize] = 1;
    t[b'[' as usize] = 1;
    t[b'}' as usize] = 2;
    t[b']' as usize] = 2;
    t[b'"' as usize] = 3;
    t
};

/// `b[i]` starts a JSON value: the index just past it.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                // A byte always indexes the 256-entry table.
                #[allow(clippy::indexing_slicing)]
                let class = STRUCTURAL[*b.get(j)? as usize];
                match class {
                    0 => j += 1,
                    1 => {
                        depth += 1;
                        j += 1;
                    }
                    2 => {
                        depth -= 1;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => j = skip_string(b, j)?,
                }
            }
        }
        _ => {
            // A number, true, false or null: up to the next delimiter.
            let rest = b.get(i..)?;
            let n = rest
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            (n > 0).then_some(i + n)
        }
    }
}

/// Where `part`, a slice of `text`, lies in it.
pub(crate) fn span_in(text: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start + part.len();
    (end <= text.len()).then_some(start..end)
}

/// `s` as a JSON string, handed to `push` in pieces: between quotes as it is when nothing in it
/// needs escaping (names, most texts), else escaped by serde_json.
pub(crate) fn push_json_str(s: &str, mut push: impl FnMut(&str)) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        push(&serde_json::Value::String(s.to_owned()).to_string());
    } else {
        push("\"");
        push(s);
        push("\"");
    }
}

/// Decodes a raw JSON string value.
pub fn raw_str(v: &RawValue) -> Option<String> {
    raw_str_text(v.get())
}

/// Decodes a JSON string given as its raw text (quotes included).
pub fn raw_str_text(s: &str) -> Option<String> {
    raw_str_borrowed(s).map(std::borrow::Cow::into_owned)
}

/// Decodes a JSON string given as its raw text (quotes included), borrowed from it when it
/// has no escapes (most names and versions).
pub fn raw_str_borrowed(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if memchr::memchr2(b'\\', b'"', inner.as_bytes()).is_none() {
            return Some(std::borrow::Cow::Borrowed(inner));
        }
    }
    serde_json::from_str::<String>(s)
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// Whether client capabilities (raw JSON) declare `path`: `["sampling"]`, `["elicitation",
/// "url"]`, `["extensions", TASKS_EXTENSION]` — a member at each step.
pub fn declares(capabilities: &str, path: &[&str]) -> bool {
    serde_json::from_str::<serde_json::Value>(capabilities)
        .ok()
        .is_some_and(|v| path.iter().try_fold(&v, |v, k| v.get(k)).is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_encoded_as_the_specification_says() {
        assert_eq!(header_value_encode("get_weather"), "get_weather");
        assert_eq!(
            header_value_encode("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(header_value_encode(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            header_value_encode("=?base64?x?="),
            "=?base64?PT9iYXNlNjQ/eD89?="
        );
    }
    use proptest::prelude::*;

    /// What serde_json finds for the same members (the reference the scanner must match).
    #[derive(Deserialize)]
    struct Reference<'a> {
        #[serde(borrow, default)]
        name: Option<&'a RawValue>,
        #[serde(borrow, default)]
        uri: Option<&'a RawValue>,
        #[serde(rename = "uriTemplate", borrow, default)]
        uri_template: Option<&'a RawValue>,
        #[serde(rename = "inputSchema", borrow, default)]
        input_schema: Option<&'a RawValue>,
    }

    /// Every member of an object, in order, duplicates included.
    struct Pairs<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> Deserialize<'de> for Pairs<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Pairs<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some(pair) = map.next_entry::<String, &'de RawValue>()? {
                        out.push(pair);
                    }
                    Ok(Pairs(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn reference(raw: &str) -> Option<ItemKey<'_>> {
        let r: Reference<'_> = serde_json::from_str(raw).ok()?;
        let pairs: Pairs<'_> = serde_json::from_str(raw).ok()?;
        let text = |name: &str| {
            let mut all = pairs
                .0
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.get());
            (all.next(), all.next().is_some())
        };
        let (description, two_descriptions) = text("description");
        let (title, two_titles) = text("title");
        Some(ItemKey {
            description,
            title,
            repeated: two_descriptions || two_titles,
            name: r.name.map(RawValue::get),
            uri: r.uri.map(RawValue::get),
            uri_template: r.uri_template.map(RawValue::get),
            input_schema: r.input_schema.map(RawValue::get),
            plain_schema: r
                .input_schema
                .is_some_and(|s| is_plain_object_schema(s.get())),
        })
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[a-z\"\\\\{}\\[\\],: é\u{1F600}]{0,8}".prop_map(serde_json::Value::from),
            "[a-z\"\\\\{}\\[\\] é]{8,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("name".to_string()),
                            Just("uri".to_string()),
                            Just("inputSchema".to_string()),
                            Just("description".to_string()),
                            Just("title".to_string()),
                            "[a-z\"\\\\]{0,6}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn item_scan_agrees_with_serde(v in json_value(), pretty in any::<bool>()) {
            let raw = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            let expected = if v.is_object() { reference(&raw) } else { None };
            prop_assert_eq!(ItemKey::scan(&raw, true), expected, "{}", raw);
            let unchecked = expected.map(|e| ItemKey { plain_schema: false, ..e });
            prop_assert_eq!(ItemKey::scan(&raw, false), unchecked);
        }
    }

    #[test]
    fn item_scan_edge_cases() {
        let k = ItemKey::scan(
            r#" {"n\u0061me" : "x\"y", "inputSchema":{"a":["}",{"b":"\\"}]}, "z": -1.5e3 } "#,
            true,
        )
        .unwrap();
        assert_eq!(k.name, Some(r#""x\"y""#));
        assert_eq!(k.input_schema, Some(r#"{"a":["}",{"b":"\\"}]}"#));
        assert_eq!(
            ItemKey::scan(r#"{"name":"a","name":"b"}"#, true),
            None,
            "duplicates"
        );
        assert_eq!(ItemKey::scan(r#"["name"]"#, true), None);
        assert_eq!(ItemKey::scan("{}", true), Some(ItemKey::default()));
        assert_eq!(ItemKey::scan(r#"{"name":"a""#, true), None, "truncated");
        // The profile check rides along with the scan of `inputSchema`.
        let plain = |raw: &str| ItemKey::scan(raw, true).map(|k| k.plain_schema);
        assert_eq!(
            plain(
                r#"{"inputSchema":{"type":"object","properties":{"a":{"x":[1]}},"required":["a"]},"name":"t"}"#
            ),
            Some(true)
        );
        assert_eq!(
            plain(r#"{"inputSchema":{"anyOf":[{"type":"object","properties":{}}]},"name":"t"}"#),
            Some(false)
        );
        assert_eq!(
            plain(r#"{"inputSchema":{"type":"object","properties":{"a\u0062":{}}},"name":"t"}"#),
            Some(false),
            "escaped property names are left to the general path"
        );
        assert_eq!(plain(r#"{"inputSchema":null}"#), Some(false));
        assert_eq!(
            plain(r#"{"inputSchema":{"type":"object","properties":{}},"x":}"#),
            None
        );
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
        assert!(allows_batches("2025-03-26"));
        assert!(!allows_batches("2025-06-18"));
    }
}
