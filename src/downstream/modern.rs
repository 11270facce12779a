//! MCP 2026-07-28 ("modern") agents on either front: each request describes itself in
//! `params._meta` (protocol version, client capabilities), there is no `initialize` and no
//! session the agent sees.
//!
//! Owns: telling a modern request from a legacy one, the specification's validation ladder
//! (malformed `_meta` → -32602, headers that disagree with the body → -32020, an unserved
//! version → -32022, removed or unknown methods → -32601), `server/discover`, and turning what a
//! session sends back into what a modern agent may receive (`resultType` on every result, cache
//! hints on lists and reads, log messages only at the level the request asked for, never a
//! server→client request). Behind it, one internal session per caller keeps the upstreams'
//! (legacy) sessions inside mcp-warden: a caller's view is a function of its credential only.
//!
//! Must not: know a transport's framing. The fronts pass parsed messages (and, over HTTP, the
//! request's headers) and write what comes back.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};

use crate::config::Config;
use crate::identity::Caller;
use crate::jsonrpc::{self, code, Kind, Message};
use crate::mcp;
use crate::mcp::params::{At, Params};
use crate::session::Session;
use crate::util::lock;

/// -32020: a routing header is missing or disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// -32021: the request needs a client capability it did not declare.
pub const MISSING_CAPABILITY: i64 = -32021;
/// -32022: the protocol version named is not served.
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// Methods a modern agent may call (2026-07-28, without extensions).
const METHODS: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "subscriptions/listen",
];

/// The tasks extension's methods (`io.modelcontextprotocol/tasks`), for requests that declare
/// it; its removed 2025-11-25 methods (`tasks/result`, `tasks/list`) are unknown.
const TASK_METHODS: &[&str] = &["tasks/get", "tasks/update", "tasks/cancel"];

/// Results a modern agent may cache, which carry `ttlMs` and `cacheScope`.
const CACHEABLE: &[&str] = &[
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// The fixed strings looked for in every modern (and every legacy) message, each searcher
/// built once: building one costs more than most searches.
fn finder(needle: &'static str) -> memchr::memmem::Finder<'static> {
    memchr::memmem::Finder::new(needle.as_bytes())
}
static VERSION_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| finder(mcp::META_PROTOCOL_VERSION));
static RESULT_TYPE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| finder("\"resultType\""));
static TTL_MS: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| finder("\"ttlMs\""));
static CACHE_SCOPE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| finder("\"cacheScope\""));

fn has(f: &memchr::memmem::Finder<'static>, text: &str) -> bool {
    f.find(text.as_bytes()).is_some()
}

/// Whether `msg` is a modern request: only the reserved version key in `params._meta` says so
/// (legacy requests carry `_meta` too, for progress tokens).
pub fn claims_modern(msg: &Message) -> bool {
    msg.kind() == Kind::Request
        && msg.params().is_some_and(|p| {
            // A legacy request pays one substring search; the typed look only when it matches.
            has(&VERSION_KEY, p) && Params::of(msg).protocol_version.is_some()
        })
}

/// A refusal of a modern request: its JSON-RPC error and, over HTTP, its status.
#[derive(Debug)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl Refusal {
    fn new(code: i64, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The error answering request `id`.
    pub fn answer(&self, id: Option<&str>) -> Message {
        jsonrpc::error_with_data(id, self.code, &self.message, self.data.clone())
    }
}

/// The HTTP status of a modern JSON-RPC error (the specification's table: malformed requests
/// and refusals 400, an unknown method 404, anything else is an answer, 200).
pub fn http_status(error_code: i64) -> u16 {
    match error_code {
        code::PARSE_ERROR
        | code::INVALID_REQUEST
        | code::INVALID_PARAMS
        | HEADER_MISMATCH
        | MISSING_CAPABILITY
        | UNSUPPORTED_VERSION => 400,
        code::METHOD_NOT_FOUND => 404,
        _ => 200,
    }
}

/// The byte range that removing the member whose value spans `value` takes out of `text`:
/// its key, its value and one comma beside it (`None` when the text around it is not a
/// member's).
fn member_range(text: &[u8], value: Range<usize>) -> Option<Range<usize>> {
    let before = |mut i: usize| {
        while i > 0 && text.get(i - 1).is_some_and(u8::is_ascii_whitespace) {
            i -= 1;
        }
        i
    };
    let mut at = before(value.start);
    (text.get(at.checked_sub(1)?) == Some(&b':')).then_some(())?;
    at = before(at - 1);
    (text.get(at.checked_sub(1)?) == Some(&b'"')).then_some(())?;
    // The key's opening quote: the first quote before its closing one that no odd run of
    // backslashes escapes.
    let mut open = at - 1;
    loop {
        open = memchr::memrchr(b'"', text.get(..open)?)?;
        let slashes = text
            .get(..open)?
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if slashes % 2 == 0 {
            break;
        }
    }
    let mut after = value.end;
    while text.get(after).is_some_and(u8::is_ascii_whitespace) {
        after += 1;
    }
    if text.get(after) == Some(&b',') {
        return Some(open..after + 1);
    }
    let start = before(open);
    match text.get(start.checked_sub(1)?) {
        Some(b',') => Some(start - 1..value.end),
        _ => Some(open..value.end),
    }
}

/// The routing headers of an HTTP request, as the front read them (names are matched
/// case-insensitively by the HTTP layer). `Err` for a header sent twice or not text.
pub struct Headers<'a> {
    pub get: &'a (dyn Fn(&str) -> Result<Option<&'a str>, ()> + Sync),
}

/// Log levels, lowest first (RFC 5424 order as MCP names them).
const LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// A modern request, validated, in the shape the session serves (its reserved `_meta` keys
/// removed), with what the answer needs.
pub struct Request {
    /// As the caller's internal session serves it: under an id (and a progress token) of
    /// mcp-warden's, unique among every request the session has in flight, since unrelated
    /// requests of one caller may reuse ids and tokens.
    pub msg: Message,
    /// What the session reads of `msg`'s params (read once, here).
    pub params: Params,
    /// The request as the agent sent it: its id (restored on the answer) and declared
    /// capabilities.
    agent: Message,
    /// Where the client capabilities are in `agent`.
    capabilities: Option<At>,
    /// The agent's own progress token (raw JSON), restored on its progress.
    pub progress_token: Option<String>,
    pub method: &'static str,
    /// What it names: the tool or prompt (`params.name`) or resource (`params.uri`).
    pub target: Option<String>,
    /// The lowest level of `notifications/message` the agent asked for with this request.
    pub log_level: Option<usize>,
}

impl Request {
    /// The agent's own id (raw JSON).
    pub fn id(&self) -> &str {
        self.agent.id_str().unwrap_or("null")
    }

    /// The client capabilities this request declared (a raw JSON object; read only when an
    /// upstream asks the agent something).
    pub fn capabilities(&self) -> &str {
        Params::text(&self.agent, self.capabilities).unwrap_or("{}")
    }
}

/// Runs the validation ladder on a modern request. `headers`: over HTTP, the routing headers
/// (checked against the body); over stdio there are none. `internal`: a number unique among
/// the caller's requests in flight, which becomes the request's id (and progress token)
/// inside.
pub fn validate(
    msg: &Message,
    headers: Option<&Headers<'_>>,
    internal: u64,
) -> Result<Request, Refusal> {
    let bad_meta = || {
        Refusal::new(
            code::INVALID_PARAMS,
            "Invalid params: params._meta must carry io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities",
        )
    };
    let method = msg.method().unwrap_or_default();
    // One pass over `params`, shared with the session that serves the request.
    let params = Params::of(msg);
    if let Some(k) = params.twice {
        return Err(Refusal::new(
            code::INVALID_PARAMS,
            format!("Invalid params: params names {k} twice"),
        ));
    }
    let text = |at| Params::text(msg, at);
    if !params.meta {
        return Err(bad_meta());
    }
    let version_raw = text(params.protocol_version).ok_or_else(bad_meta)?;
    let capabilities = text(params.client_capabilities)
        .filter(|c| c.starts_with('{'))
        .ok_or_else(bad_meta)?;
    let version = mcp::raw_str_borrowed(version_raw);
    if let Some(h) = headers {
        check_headers(h, version.as_deref(), method, msg, &params)?;
    }
    let Some(version) = version.as_deref() else {
        return Err(bad_meta());
    };
    if !mcp::MODERN_VERSIONS.contains(&version) {
        let mut r = Refusal::new(UNSUPPORTED_VERSION, "Unsupported protocol version");
        r.data = Some(serde_json::json!({
            "supported": mcp::MODERN_VERSIONS,
            "requested": version,
        }));
        return Err(r);
    }
    let Some(known) = METHODS.iter().chain(TASK_METHODS).find(|m| **m == method) else {
        return Err(Refusal::new(code::METHOD_NOT_FOUND, "Method not found"));
    };
    if TASK_METHODS.contains(known)
        && !mcp::declares(capabilities, &["extensions", mcp::TASKS_EXTENSION])
    {
        let mut r = Refusal::new(
            MISSING_CAPABILITY,
            "Missing required client capability: the tasks extension",
        );
        r.data = Some(serde_json::json!({
            "requiredCapabilities": {"extensions": {mcp::TASKS_EXTENSION: {}}}
        }));
        return Err(r);
    }
    let log_level = match text(params.log_level) {
        None => None,
        Some(l) => match mcp::raw_str_borrowed(l).and_then(|l| LEVELS.iter().position(|x| *x == l))
        {
            Some(i) => Some(i),
            None => {
                return Err(Refusal::new(
                    code::INVALID_PARAMS,
                    "Invalid params: unknown log level",
                ))
            }
        },
    };
    let target = text(params.name.or(params.uri)).and_then(mcp::raw_str_text);
    // What the session serves, in one copy, under an id and progress token of ours: the
    // request without the version, which alone makes a request modern to a server that speaks
    // both eras (mcp-warden's connection to a 2026-07-28 upstream puts its own back). The
    // agent's capabilities, client info and log level stay: a 2026-07-28 upstream sees this
    // request's, a 2025 one ignores them.
    let internal = {
        let mut n = itoa::Buffer::new();
        let n = n.format(internal);
        let mut id = String::with_capacity(n.len() + 5);
        id.push_str("\"mw-");
        id.push_str(n);
        id.push('"');
        id
    };
    let version_member = params
        .protocol_version
        .and_then(|v| member_range(msg.bytes(), v.range()))
        .ok_or_else(bad_meta)?;
    let mut edits: Vec<(Range<usize>, &str)> = Vec::with_capacity(3);
    if let Some(id) = msg.id_str() {
        edits.push((msg.span_of(id), &internal));
    }
    edits.push((version_member, ""));
    if let Some(t) = params.progress_token {
        edits.push((t.range(), &internal));
    }
    edits.sort_by_key(|(r, _)| r.start);
    Ok(Request {
        msg: msg.with_edits(&edits),
        params: params.moved(&edits),
        agent: msg.clone(),
        capabilities: params.client_capabilities,
        progress_token: text(params.progress_token).map(str::to_string),
        method: known,
        target,
        log_level,
    })
}

/// `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` must be present and say what the body
/// says.
fn check_headers(
    h: &Headers<'_>,
    version: Option<&str>,
    method: &str,
    msg: &Message,
    params: &Params,
) -> Result<(), Refusal> {
    let mismatch = |what: &str| {
        Refusal::new(
            HEADER_MISMATCH,
            format!("Header mismatch: {what} does not match the request body"),
        )
    };
    let get = |name: &str, what: &str| -> Result<Option<&str>, Refusal> {
        (h.get)(name).map_err(|()| mismatch(what))
    };
    let header_version = get(mcp::HEADER_PROTOCOL_VERSION, "MCP-Protocol-Version")?;
    if header_version != version {
        return Err(mismatch("MCP-Protocol-Version"));
    }
    if get(mcp::HEADER_METHOD, "Mcp-Method")? != Some(method) {
        return Err(mismatch("Mcp-Method"));
    }
    let named = match mcp::named_member(method) {
        Some("name") => params.name,
        Some("uri") => params.uri,
        Some(_) => params.task_id,
        None => return Ok(()),
    };
    let body_name = Params::text(msg, named).and_then(mcp::raw_str_borrowed);
    let header_name = get(mcp::HEADER_NAME, "Mcp-Name")?.map(mcp::header_value_decode);
    match (header_name, body_name) {
        (Some(Some(h)), Some(b)) if h == b => Ok(()),
        _ => Err(mismatch("Mcp-Name")),
    }
}

/// A call's `Mcp-Param-*` headers (HTTP) against its arguments, for the tool as the caller
/// sees it (its `x-mcp-header` annotations): a header that is missing, extra or disagrees is
/// refused (-32020) before anything is forwarded.
pub async fn check_param_headers(
    session: &Session,
    req: &Request,
    headers: &Headers<'_>,
) -> Result<(), Refusal> {
    let Some(tool) = req.target.as_deref() else {
        return Ok(());
    };
    let params = session.header_params(tool).await;
    if params.is_empty() {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct Args {
        #[serde(default)]
        arguments: Option<Map<String, Value>>,
    }
    let args = req
        .msg
        .params()
        .and_then(|p| serde_json::from_str::<Args>(p).ok())
        .and_then(|a| a.arguments)
        .unwrap_or_default();
    mcp::header_params::check(&params, &args, headers.get)
        .map_err(|why| Refusal::new(HEADER_MISMATCH, format!("Header mismatch: {why}")))
}

/// What becomes of a message a session sends for a modern request.
pub enum Outbound {
    /// Goes to the agent (possibly rewritten).
    Agent(Message),
    /// Not for a modern agent: dropped.
    Drop,
    /// A server→client request a modern agent cannot receive: refused to the session under
    /// this answer, as an agent without that capability would.
    Refuse(Message),
}

/// Shapes one message for a modern agent's request.
pub fn outbound(req: &Request, m: Message) -> Outbound {
    match m.kind() {
        Kind::Request => Outbound::Refuse(jsonrpc::error_response(
            m.id_str(),
            code::METHOD_NOT_FOUND,
            "The client does not accept server-to-client requests",
        )),
        Kind::Notification => match m.method() {
            Some("notifications/progress") => match progress_for_agent(req, &m) {
                Some(m) => Outbound::Agent(m),
                None => Outbound::Drop,
            },
            Some("notifications/message") => {
                let level = m
                    .params()
                    .and_then(|p| serde_json::from_str::<LogView<'_>>(p).ok())
                    .and_then(|l| LEVELS.iter().position(|x| *x == l.level));
                match (req.log_level, level) {
                    (Some(min), Some(l)) if l >= min => Outbound::Agent(m),
                    _ => Outbound::Drop,
                }
            }
            _ => Outbound::Drop,
        },
        Kind::Response => Outbound::Agent(complete(req.method, &m, req.id())),
    }
}

/// Progress under the agent's own token.
fn progress_for_agent(req: &Request, m: &Message) -> Option<Message> {
    let token = req.progress_token.as_deref()?;
    let p = serde_json::from_str::<mcp::ProgressParams<'_>>(m.params()?).ok()?;
    let span = m.span_of(p.progress_token.get());
    Message::parse(jsonrpc::splice(
        m.bytes(),
        vec![jsonrpc::Edit::new(span, token)],
    ))
    .ok()
}

#[derive(Deserialize)]
struct LogView<'a> {
    #[serde(borrow)]
    level: &'a str,
}

#[derive(Deserialize)]
struct ResultView<'a> {
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<&'a RawValue>,
    #[serde(rename = "ttlMs", borrow, default)]
    ttl_ms: Option<&'a RawValue>,
    #[serde(rename = "cacheScope", borrow, default)]
    cache_scope: Option<&'a RawValue>,
}

/// An answer as a modern agent must get it, under the agent's `id`: every result says its
/// `resultType`; cacheable results say how long and for whom (`private`: lists are per agent);
/// a resource that does not exist is `-32602` (2026-07-28), not the older `-32002`.
fn complete(method: &str, m: &Message, id: &str) -> Message {
    if let Some(e) = m.error() {
        if e.contains("-32002") {
            #[derive(Deserialize)]
            struct E {
                code: i64,
                message: String,
                #[serde(default)]
                data: Option<Value>,
            }
            if let Ok(err) = serde_json::from_str::<E>(e) {
                if err.code == code::RESOURCE_NOT_FOUND {
                    let mut r = Refusal::new(code::INVALID_PARAMS, err.message);
                    r.data = err.data;
                    return r.answer(Some(id));
                }
            }
        }
        return m.with_id(id);
    }
    let (Some(result), Some(old_id)) = (m.result(), m.id_str()) else {
        return m.with_id(id);
    };
    // Only a result that mentions one of the fields is read for them (a legacy upstream's
    // never does): the common answer costs a substring search, not a parse.
    let cacheable = CACHEABLE.contains(&method);
    let mentions = has(&RESULT_TYPE, result)
        || (cacheable && (has(&TTL_MS, result) || has(&CACHE_SCOPE, result)));
    let view = if mentions {
        match serde_json::from_str::<ResultView<'_>>(result) {
            Ok(v) => v,
            Err(_) => return m.with_id(id),
        }
    } else {
        ResultView {
            result_type: None,
            ttl_ms: None,
            cache_scope: None,
        }
    };
    let mut add = String::new();
    if view.result_type.is_none() {
        add.push_str(r#""resultType":"complete","#);
    }
    if cacheable {
        if view.ttl_ms.is_none() {
            add.push_str(r#""ttlMs":0,"#);
        }
        if view.cache_scope.is_none() {
            add.push_str(r#""cacheScope":"private","#);
        }
    }
    if add.is_empty() || !result.starts_with('{') {
        return m.with_id(id);
    }
    // Inserted right after the result object's `{`, in the same copy as the id (no re-parse:
    // the spans move); an empty object loses the last comma.
    let at = m.span_of(result).start + 1;
    let body = result.get(1..).unwrap_or_default();
    if body.trim_start().starts_with('}') {
        add.pop();
    }
    let mut edits = [(m.span_of(old_id), id), (at..at, add.as_str())];
    edits.sort_by_key(|(r, _)| r.start);
    m.with_edits(&edits)
}

/// The `server/discover` result for a caller: what its session's upstreams offer, merged.
pub fn discover(session: &Session, id: &str) -> Message {
    let (mut capabilities, instructions) = session.merged_capabilities();
    // A modern server sets no log level: logging is per request. Tasks are an extension now
    // (`extensions`, as the upstreams that offer them say); 2025-11-25's capability is not.
    capabilities.remove("logging");
    capabilities.remove("tasks");
    let mut result = serde_json::json!({
        "resultType": "complete",
        "supportedVersions": mcp::MODERN_VERSIONS,
        "capabilities": capabilities,
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {
            mcp::META_SERVER_INFO: {
                "name": session.cfg().proxy.server_name,
                "version": env!("CARGO_PKG_VERSION"),
            }
        },
    });
    if let (Some(i), Some(r)) = (instructions, result.as_object_mut()) {
        r.insert("instructions".into(), Value::String(i));
    }
    jsonrpc::response(id, result)
}

/// The kinds of change a `subscriptions/listen` asked for, and what it is told it gets.
pub struct Listen {
    /// `toolsListChanged`, `promptsListChanged`, `resourcesListChanged`, as asked.
    pub kinds: [bool; 3],
    /// The resources whose updates it gets (`resourceSubscriptions`, those the caller's
    /// upstreams took), subscribed for as long as it lives.
    resources: Option<ResourceSubscriptions>,
}

const LISTEN_KEYS: [(&str, &str); 3] = [
    ("toolsListChanged", "notifications/tools/list_changed"),
    ("promptsListChanged", "notifications/prompts/list_changed"),
    (
        "resourcesListChanged",
        "notifications/resources/list_changed",
    ),
];

/// A listen's resource subscriptions in the caller's session: subscribed upstream when the
/// first listen of the caller asks for a URI, unsubscribed when the last one ends.
struct ResourceSubscriptions {
    session: Arc<Session>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    uris: Vec<String>,
}

impl Drop for ResourceSubscriptions {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        for uri in &self.uris {
            let last = match counts.get_mut(uri) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => true,
            };
            if last {
                counts.remove(uri);
                let req = jsonrpc::request(
                    &internal_id("unsub"),
                    "resources/unsubscribe",
                    serde_json::json!({ "uri": uri }),
                );
                self.session.handle(req, no_sink());
            }
        }
    }
}

/// An id of mcp-warden's for a request it makes in a caller's session itself.
fn internal_id(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Value::String(format!("mw-{what}-{n}")).to_string()
}

impl Listen {
    /// Reads `params.notifications` of a `subscriptions/listen` and subscribes to the
    /// resources it names (those no upstream of the caller's takes are left out of the
    /// acknowledgement, as the specification says for what is not supported).
    pub async fn open(entry: &Entry, req: &Request) -> Result<Listen, Refusal> {
        #[derive(Deserialize)]
        struct P {
            notifications: Map<String, Value>,
        }
        let p: P = req
            .msg
            .params()
            .and_then(|p| serde_json::from_str(p).ok())
            .ok_or_else(|| {
                Refusal::new(
                    code::INVALID_PARAMS,
                    "Invalid params: subscriptions/listen needs `notifications`",
                )
            })?;
        let mut kinds = [false; 3];
        for (i, (key, _)) in LISTEN_KEYS.iter().enumerate() {
            if let Some(k) = kinds.get_mut(i) {
                *k = p.notifications.get(*key) == Some(&Value::Bool(true));
            }
        }
        let asked: Vec<String> = match p.notifications.get("resourceSubscriptions") {
            None => vec![],
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                return Err(Refusal::new(
                    code::INVALID_PARAMS,
                    "Invalid params: resourceSubscriptions must be a list of URIs",
                ))
            }
        };
        let resources = if asked.is_empty() {
            None
        } else {
            Some(subscribe(entry, asked).await)
        };
        Ok(Listen { kinds, resources })
    }

    /// The first message of the stream: what is honoured.
    pub fn acknowledgement(&self, id: &str) -> Message {
        let mut honoured = Map::new();
        for ((key, _), on) in LISTEN_KEYS.iter().zip(self.kinds) {
            if on {
                honoured.insert((*key).to_string(), Value::Bool(true));
            }
        }
        if let Some(r) = self.resources.as_ref().filter(|r| !r.uris.is_empty()) {
            honoured.insert("resourceSubscriptions".into(), serde_json::json!(r.uris));
        }
        let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
        jsonrpc::notification(
            "notifications/subscriptions/acknowledged",
            Some(serde_json::json!({
                "_meta": {mcp::META_SUBSCRIPTION_ID: id},
                "notifications": honoured,
            })),
        )
    }

    /// The listen's own answer, which ends it when the server stops it (the specification:
    /// the response, then the stream closes).
    pub fn ending(&self, id: &str) -> Message {
        let tag: Value = serde_json::from_str(id).unwrap_or(Value::Null);
        jsonrpc::response(
            id,
            serde_json::json!({"resultType": "complete", "_meta": {mcp::META_SUBSCRIPTION_ID: tag}}),
        )
    }

    /// A notification of the caller's session, tagged for this subscription if it asked for
    /// it: a kind of list change, or an update of a resource it subscribed to.
    pub fn relay(&self, id: &str, m: &Message) -> Option<Message> {
        let method = m.method()?;
        let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
        if method == "notifications/resources/updated" {
            let uri = m
                .params()
                .and_then(|p| serde_json::from_str::<mcp::UriParams<'_>>(p).ok())
                .and_then(|p| mcp::raw_str(p.uri))?;
            self.resources.as_ref()?.uris.contains(&uri).then_some(())?;
            return Some(jsonrpc::notification(
                method,
                Some(serde_json::json!({"uri": uri, "_meta": {mcp::META_SUBSCRIPTION_ID: id}})),
            ));
        }
        let asked = LISTEN_KEYS
            .iter()
            .zip(self.kinds)
            .any(|((_, n), on)| on && *n == method);
        if !asked {
            return None;
        }
        Some(jsonrpc::notification(
            method,
            Some(serde_json::json!({"_meta": {mcp::META_SUBSCRIPTION_ID: id}})),
        ))
    }
}

/// Subscribes the caller's session to each URI no other listen of the caller holds; the
/// result holds those the upstreams took (or that another listen already holds).
async fn subscribe(entry: &Entry, asked: Vec<String>) -> ResourceSubscriptions {
    let mut held = vec![];
    for uri in asked {
        if held.contains(&uri) {
            continue;
        }
        let already = {
            let mut counts = lock(&entry.resource_subs);
            match counts.get_mut(&uri) {
                Some(n) => {
                    *n += 1;
                    true
                }
                None => false,
            }
        };
        if !already {
            let (tx, mut rx) = mpsc::channel::<Message>(4);
            let req = jsonrpc::request(
                &internal_id("sub"),
                "resources/subscribe",
                serde_json::json!({ "uri": uri }),
            );
            entry.session.handle(req, tx);
            let answer = loop {
                match rx.recv().await {
                    Some(m) if m.kind() == Kind::Response => break Some(m),
                    Some(_) => {}
                    None => break None,
                }
            };
            match answer {
                Some(a) if a.result().is_some() => {}
                other => {
                    let why = other
                        .as_ref()
                        .and_then(Message::error)
                        .unwrap_or("no answer")
                        .to_string();
                    tracing::debug!(%uri, %why, "resource subscription not taken");
                    continue;
                }
            }
            *lock(&entry.resource_subs).entry(uri.clone()).or_insert(0) += 1;
        }
        held.push(uri);
    }
    ResourceSubscriptions {
        session: entry.session.clone(),
        counts: entry.resource_subs.clone(),
        uris: held,
    }
}

/// The internal sessions serving modern callers, one per caller, created on first use; and
/// the calls waiting for an agent's input (multi round-trip requests).
pub struct Stateless {
    /// (foldhash: a caller is an authenticated identity, hashed at every request.)
    callers: Mutex<HashMap<Caller, Arc<tokio::sync::OnceCell<Entry>>, foldhash::fast::RandomState>>,
    /// Calls whose upstream asked the agent something, by the id in their `requestState`.
    parked: Mutex<HashMap<String, Parked>>,
    /// Authenticates the `requestState`s mcp-warden issues (per process: parked calls live
    /// in memory).
    key: [u8; 32],
}

impl Default for Stateless {
    fn default() -> Stateless {
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut key) {
            // The parked call's id is random too; without randomness there is none to park.
            tracing::error!(error = %e, "no randomness for requestState keys");
        }
        Stateless {
            callers: Mutex::default(),
            parked: Mutex::default(),
            key,
        }
    }
}

/// How long a call waits for the agent to answer what its upstream asked.
const PARK_TTL: std::time::Duration = std::time::Duration::from_secs(600);

struct Parked {
    call: Call,
    binding: String,
    until: tokio::time::Instant,
}

/// Methods whose answer may be an `InputRequiredResult` (2026-07-28).
const MRTR_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// A modern request being served: what the session sends for it, shaped for the agent; a
/// server→client request from the upstream is asked of the agent as a multi round-trip.
pub struct Call {
    pub session: Arc<Session>,
    rx: mpsc::Receiver<Message>,
    pub req: Request,
    /// Asked of the agent and not answered yet: (key, the session's id of the upstream's
    /// request, that request).
    asked: Vec<(String, String, Message)>,
    next_key: u32,
}

/// What comes next for a [`Call`].
pub enum Step {
    /// A related message (progress, a log message) for the agent.
    Send(Message),
    /// The answer.
    Answer(Message),
    /// The upstream asks the agent something: park the call ([`Stateless::park`]).
    Ask(Message),
    /// The session dropped the request.
    Closed,
}

fn no_sink() -> mpsc::Sender<Message> {
    mpsc::channel(1).0
}

impl Call {
    pub fn start(session: Arc<Session>, req: Request) -> Call {
        let (tx, rx) = mpsc::channel::<Message>(64);
        session.handle_request(req.msg.clone(), req.params, tx);
        Call {
            session,
            rx,
            req,
            asked: vec![],
            next_key: 1,
        }
    }

    /// Our id of the request in the session (raw JSON).
    pub fn internal_id(&self) -> String {
        self.req.msg.id_str().unwrap_or("null").to_string()
    }

    pub async fn next(&mut self) -> Step {
        loop {
            let Some(m) = self.rx.recv().await else {
                return Step::Closed;
            };
            if m.kind() == Kind::Request && self.may_ask(&m) {
                return Step::Ask(m);
            }
            match outbound(&self.req, m) {
                Outbound::Drop => {}
                Outbound::Refuse(answer) => self.session.handle(answer, no_sink()),
                Outbound::Agent(m) if m.kind() == Kind::Response => return Step::Answer(m),
                Outbound::Agent(m) => return Step::Send(m),
            }
        }
    }

    /// Whether the upstream's request can be put to the agent: only within a call that may
    /// return `input_required`, and only for what this request declared it can do.
    fn may_ask(&self, m: &Message) -> bool {
        if !MRTR_METHODS.contains(&self.req.method) {
            return false;
        }
        let caps = self.req.capabilities();
        match m.method() {
            Some("sampling/createMessage") => mcp::declares(caps, &["sampling"]),
            Some("roots/list") => mcp::declares(caps, &["roots"]),
            Some("elicitation/create") => {
                let url_mode = m
                    .params()
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                    .is_some_and(|p| p.get("mode") == Some(&Value::String("url".into())));
                if url_mode {
                    mcp::declares(caps, &["elicitation", "url"])
                } else {
                    // `elicitation: {}` is form mode.
                    mcp::declares(caps, &["elicitation", "form"])
                        || serde_json::from_str::<Value>(caps)
                            .ok()
                            .and_then(|c| c.get("elicitation").cloned())
                            .is_some_and(|e| e.as_object().is_some_and(Map::is_empty))
                }
            }
            _ => false,
        }
    }
}

impl Stateless {
    fn binding(caller: &Caller, req: &Request) -> String {
        let who = match caller {
            Caller::Agent(a) => format!("agent:{a}"),
            Caller::Signed { agent, subject } => format!("agent:{agent}\n{subject}"),
            Caller::User => "user".to_string(),
        };
        format!(
            "{who}\n{}\n{}",
            req.method,
            req.target.as_deref().unwrap_or_default()
        )
    }

    fn mac(&self, id: &str, binding: &str) -> String {
        use hmac::Mac;
        let Ok(mut m) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        m.update(id.as_bytes());
        m.update(b"\n");
        m.update(binding.as_bytes());
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Parks `call`, whose upstream asked `asked` of the agent, and returns the agent's answer:
    /// an `InputRequiredResult` with everything still to be answered, and a `requestState`
    /// that only this caller can resume (authenticated, bound to the caller and the request).
    pub fn park(&self, caller: &Caller, mut call: Call, asked: Option<Message>) -> Message {
        self.sweep();
        // Bounded per caller: an agent that never comes back cannot fill memory with calls.
        let binding = Stateless::binding(caller, &call.req);
        let who = binding.split('\n').next().unwrap_or_default().to_string();
        let parked_by_caller = lock(&self.parked)
            .values()
            .filter(|p| p.binding.split('\n').next() == Some(who.as_str()))
            .count();
        // Half the session's in-flight limit: parked calls stay in flight in the caller's
        // internal session, and the other half stays for its other requests.
        let max = (call.session.cfg().proxy.max_inflight_per_session / 2).max(1);
        if parked_by_caller >= max {
            tracing::warn!(caller = %who, "too many calls waiting for input; this one is cancelled");
            cancel(
                &call.session,
                &call.internal_id(),
                "too many calls waiting for input",
            );
            return Refusal::new(
                code::INTERNAL_ERROR,
                "Too many calls are waiting for this client's input; answer or abandon them first",
            )
            .answer(Some(call.req.id()));
        }
        if let Some(m) = asked {
            let key = format!("input-{}", call.next_key);
            call.next_key += 1;
            let sid = m.id_str().unwrap_or("null").to_string();
            call.asked.push((key, sid, m));
        }
        let mut requests = Map::new();
        for (key, _, m) in &call.asked {
            let params: Value = m
                .params()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_else(|| Value::Object(Map::new()));
            requests.insert(
                key.clone(),
                serde_json::json!({"method": m.method().unwrap_or_default(), "params": params}),
            );
        }
        let mut id = [0u8; 16];
        let _ = getrandom::fill(&mut id);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let state = format!("{STATE_PREFIX}{id}.{}", self.mac(&id, &binding));
        let answer = jsonrpc::response(
            call.req.id(),
            serde_json::json!({
                "resultType": "input_required",
                "inputRequests": requests,
                "requestState": state,
            }),
        );
        lock(&self.parked).insert(
            id,
            Parked {
                call,
                binding,
                until: tokio::time::Instant::now() + PARK_TTL,
            },
        );
        answer
    }

    /// Resumes the call a retry names (`requestState`), answering the upstream's requests
    /// with the agent's `inputResponses`. The call then continues under the retry's id.
    pub fn resume(&self, caller: &Caller, retry: Request) -> Result<Call, Refusal> {
        #[derive(Deserialize)]
        struct Retry {
            #[serde(rename = "requestState")]
            request_state: String,
            #[serde(rename = "inputResponses", default)]
            input_responses: Option<Value>,
        }
        let invalid = || {
            Refusal::new(
                code::INVALID_PARAMS,
                "Invalid params: requestState is not valid for this request (altered, expired, or another's)",
            )
        };
        let p: Retry = retry
            .msg
            .params()
            .and_then(|p| serde_json::from_str(p).ok())
            .ok_or_else(invalid)?;
        let (id, mac) = p
            .request_state
            .strip_prefix(STATE_PREFIX)
            .and_then(|s| s.split_once('.'))
            .ok_or_else(invalid)?;
        let binding = Stateless::binding(caller, &retry);
        let expected = self.mac(id, &binding);
        if expected.is_empty()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                mac.as_bytes(),
            ))
        {
            return Err(invalid());
        }
        let parked = lock(&self.parked).remove(id).ok_or_else(invalid)?;
        if parked.binding != binding {
            return Err(invalid());
        }
        let mut call = parked.call;
        let responses = match p.input_responses {
            Some(Value::Object(r)) => r,
            None => Map::new(),
            Some(_) => {
                // Not a map: nothing can be answered. The upstream is told so, and its own
                // answer (an error, or a result without the input) is the agent's.
                Map::new()
            }
        };
        let mut still = vec![];
        for (key, sid, m) in std::mem::take(&mut call.asked) {
            match responses.get(&key) {
                Some(v @ Value::Object(_)) => {
                    call.session
                        .handle(jsonrpc::response(&sid, v.clone()), no_sink());
                }
                Some(_) => call.session.handle(
                    jsonrpc::error_response(
                        Some(&sid),
                        code::INVALID_PARAMS,
                        "The client's input response is not an object",
                    ),
                    no_sink(),
                ),
                None => still.push((key, sid, m)),
            }
        }
        call.asked = still;
        // The rest of the call is the retry's: its id, its progress token, its log level.
        call.req.agent = retry.agent;
        if retry.progress_token.is_some() {
            call.req.progress_token = retry.progress_token;
        }
        call.req.log_level = retry.log_level;
        call.req.capabilities = retry.capabilities;
        Ok(call)
    }

    /// Whether `call` still waits for answers to what was asked (then park it again).
    pub fn still_asking(call: &Call) -> bool {
        !call.asked.is_empty()
    }

    /// Calls nobody came back for are cancelled upstream.
    fn sweep(&self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<Parked> = {
            let mut parked = lock(&self.parked);
            let ids: Vec<String> = parked
                .iter()
                .filter(|(_, p)| p.until <= now)
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| parked.remove(k)).collect()
        };
        for p in expired {
            cancel(
                &p.call.session,
                &p.call.internal_id(),
                "the client never answered",
            );
        }
    }
}

/// Cancels a request of ours in `session`.
pub fn cancel(session: &Session, internal: &str, reason: &str) {
    let cancel = jsonrpc::notification(
        "notifications/cancelled",
        Some(serde_json::json!({
            "requestId": serde_json::from_str::<Value>(internal).unwrap_or_default(),
            "reason": reason,
        })),
    );
    session.handle(cancel, no_sink());
}

/// Marks the `requestState`s mcp-warden issues; any other comes from a 2026-07-28 upstream
/// and is passed to it untouched.
const STATE_PREFIX: &str = "mw1.";

/// Whether a request is the retry of a multi round-trip mcp-warden parked (its
/// `requestState` is ours). A state from an upstream is opaque: the request goes to it.
pub fn is_retry(req: &Request) -> bool {
    MRTR_METHODS.contains(&req.method)
        && Params::text(&req.msg, req.params.request_state)
            .and_then(mcp::raw_str_borrowed)
            .is_some_and(|s| s.starts_with(STATE_PREFIX))
}

/// One caller's internal session and the fan-out of its change notifications.
#[derive(Clone)]
pub struct Entry {
    pub session: Arc<Session>,
    pub changes: broadcast::Sender<Message>,
    /// The caller's resource subscriptions: how many of its listens hold each URI.
    resource_subs: Arc<Mutex<HashMap<String, usize>>>,
    _pump: Arc<crate::task::Owned>,
}

impl Stateless {
    /// The caller's internal session, started (its upstreams connected) on first use.
    /// `subject`: the token the caller presented with this request (a [`Caller::Signed`]).
    pub async fn entry(
        &self,
        cfg: &Arc<Config>,
        caller: &Caller,
        subject: Option<crate::identity::SubjectToken>,
        instance: &crate::instance::Instance,
    ) -> Entry {
        let cell = {
            let mut callers = lock(&self.callers);
            match callers.get(caller) {
                Some(c) => c.clone(),
                None => callers.entry(caller.clone()).or_default().clone(),
            }
        };
        if let Some(e) = cell.get() {
            if let Some(t) = subject {
                e.session.set_subject(t);
            }
            return e.clone();
        }
        // The first request of a caller starts its session (boxed: the common path's future
        // stays small).
        Box::pin(cell.get_or_init(|| async {
            let (tx, mut rx) = mpsc::channel::<Message>(256);
            let (changes, _) = broadcast::channel(64);
            let fan = changes.clone();
            let me: Arc<std::sync::OnceLock<std::sync::Weak<Session>>> = Arc::default();
            let session_of_pump = me.clone();
            let pump = crate::task::spawn(tracing::debug_span!("modern-changes"), async move {
                while let Some(m) = rx.recv().await {
                    if m.kind() == Kind::Request {
                        // Asked outside any call: there is no agent request to carry it.
                        if let Some(s) = session_of_pump.get().and_then(std::sync::Weak::upgrade) {
                            let no = jsonrpc::error_response(
                                m.id_str(),
                                code::METHOD_NOT_FOUND,
                                "The client accepts requests only within a call",
                            );
                            s.handle(no, no_sink());
                        }
                        continue;
                    }
                    // Nobody listening is fine: a change matters only to open subscriptions.
                    let _ = fan.send(m);
                }
            });
            // What a modern agent may be asked (multi round-trip results): whether a request
            // declared it is checked when asked.
            let init = crate::session::own_initialize("mcp-warden (2026-07-28 agents)");
            let name = match caller.agent() {
                Some(a) => format!("modern:{a}"),
                None => "modern".to_string(),
            };
            let (session, _) =
                Session::initialize(name, cfg.clone(), caller.clone(), subject, instance, &init, tx)
                    .await;
            let _ = me.set(Arc::downgrade(&session));
            session.pass_input_required();
            tracing::info!(session = %session.id, "internal session for 2026-07-28 requests started");
            Entry {
                session,
                changes,
                resource_subs: Arc::default(),
                _pump: Arc::new(pump),
            }
        }))
        .await
        .clone()
    }

    /// Applies a reloaded config to every internal session (a caller whose agent is gone
    /// loses its session).
    pub fn reconfigure(&self, cfg: &Arc<Config>, instance: &crate::instance::Instance) {
        let entries: Vec<(Caller, Entry)> = lock(&self.callers)
            .iter()
            .filter_map(|(c, cell)| Some((c.clone(), cell.get()?.clone())))
            .collect();
        for (caller, e) in entries {
            if !e.session.reconfigure(cfg.clone(), instance) {
                lock(&self.callers).remove(&caller);
            }
        }
    }

    pub fn close(&self) {
        for cell in lock(&self.callers).drain().map(|(_, c)| c) {
            if let Some(e) = cell.get() {
                e.session.close();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.to_string())).unwrap()
    }

    #[test]
    fn header_values_decode_as_the_specification_says() {
        assert_eq!(
            mcp::header_value_decode("  name  ").as_deref(),
            Some("name")
        );
        assert_eq!(
            mcp::header_value_decode("=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(),
            Some("Hello, 世界")
        );
        assert_eq!(
            mcp::header_value_decode("=?base64?SGVsbG8?="),
            None,
            "bad padding"
        );
        assert_eq!(mcp::header_value_decode("=?base64?SGVs!!!bG8=?="), None);
        assert_eq!(
            mcp::header_value_decode("=?base64?SGVsbG8=").as_deref(),
            Some("=?base64?SGVsbG8="),
            "not the full sentinel: literal"
        );
    }

    #[test]
    fn the_session_gets_the_request_without_the_version_under_our_ids() {
        let v = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#;
        let caps = r#""io.modelcontextprotocol/clientCapabilities":{"a":"\"}"}"#;
        let escaped = r#""io.modelcontextprotocol\/protocolVersion" : "2026-07-28""#;
        for meta in [
            format!(r#"{{{v},{caps},"progressToken":7,"k\"ey":1}}"#),
            format!(r#"{{ {caps} , {v} , "progressToken" : "t" }}"#),
            format!(r#"{{"progressToken":7,{caps},{v}}}"#),
            format!(r#"{{"progressToken":7,{caps} , {escaped}}}"#),
            format!(r#"{{"k\"ey":{{{v}}},{caps},{escaped} }}"#),
        ] {
            let raw = format!(
                r#"{{"jsonrpc":"2.0","params":{{"name":"t","_meta":{meta},"arguments":{{}}}},"id":"a","method":"tools/call"}}"#
            );
            let req = validate(&msg(&raw), None, 9).unwrap_or_else(|r| panic!("{raw}: {r:?}"));
            let again = Message::parse(req.msg.bytes().clone()).unwrap();
            assert_eq!(again.params(), req.msg.params(), "{raw}");
            assert_eq!(req.msg.id_str(), Some(r#""mw-9""#));
            assert_eq!(req.id(), r#""a""#);
            let params: Value = serde_json::from_str(req.msg.params().unwrap()).unwrap();
            let sent: Value = serde_json::from_str(&raw).unwrap();
            let mut expected = sent["params"]["_meta"].clone();
            let m = expected.as_object_mut().unwrap();
            m.remove(mcp::META_PROTOCOL_VERSION);
            if m.contains_key("progressToken") {
                m.insert("progressToken".into(), "mw-9".into());
            }
            assert_eq!(params["_meta"], expected, "{raw}");
            assert_eq!(params["name"], "t");
            assert_eq!(req.capabilities(), r#"{"a":"\"}"}"#);
        }
        let twice = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"_meta":{{{v},{caps},{escaped}}}}}}}"#
        );
        let r = validate(&msg(&twice), None, 1).err().unwrap();
        assert_eq!(r.code, code::INVALID_PARAMS);
        let two_names = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","name":"b","_meta":{{{v},{caps}}}}}}}"#
        );
        assert_eq!(
            validate(&msg(&two_names), None, 1).err().unwrap().code,
            code::INVALID_PARAMS
        );
    }

    #[test]
    fn results_get_their_type_and_cache_hints() {
        let req = Request {
            msg: msg(r#"{"jsonrpc":"2.0","id":"mw-1","method":"tools/list"}"#),
            params: Params::default(),
            agent: msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            capabilities: None,
            progress_token: None,
            method: "tools/list",
            target: None,
            log_level: None,
        };
        let Outbound::Agent(m) = outbound(
            &req,
            msg(r#"{"jsonrpc":"2.0","id":"mw-1","result":{"tools":[]}}"#),
        ) else {
            panic!()
        };
        let v: Value = serde_json::from_slice(m.bytes()).unwrap();
        assert_eq!(v["id"], 1, "the agent's id restored");
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["ttlMs"], 0);
        assert_eq!(v["result"]["cacheScope"], "private");
        let Outbound::Agent(m) = outbound(&req, msg(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#))
        else {
            panic!()
        };
        let v: Value = serde_json::from_slice(m.bytes()).unwrap();
        assert_eq!(v["result"]["resultType"], "complete", "{v}");
        let log = msg(
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
        );
        assert!(matches!(outbound(&req, log.clone()), Outbound::Drop));
        let asked = Request {
            log_level: Some(0),
            ..req
        };
        assert!(matches!(outbound(&asked, log), Outbound::Agent(_)));
    }
}
