//! The merged view of every upstream's tools, prompts, resources and resource templates for one
//! session: exposed name → (upstream, original name), each item kept as raw JSON with only its
//! name spliced.

use std::collections::HashMap;
use std::hash::BuildHasher;

use bytes::Bytes;

use crate::config::{Agent, SchemaProfile, ToolChange, ToolRewrite};
use crate::jsonrpc::Message;
use crate::mcp::{self, ItemKey};
use crate::policy::naming;
use crate::policy::{agent, rewrite};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::Templates,
    ];

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The server capability an upstream must declare for this list.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    pub fn from_method(m: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == m)
    }

    pub fn from_list_changed(m: &str) -> Option<&'static [ListKind]> {
        match m {
            "notifications/tools/list_changed" => Some(&[ListKind::Tools]),
            "notifications/prompts/list_changed" => Some(&[ListKind::Prompts]),
            "notifications/resources/list_changed" => {
                Some(&[ListKind::Resources, ListKind::Templates])
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub upstream: usize,
    /// Name (tools, prompts), URI (resources) or URI template (templates) at the upstream.
    pub original: String,
    pub exposed: String,
    /// The item as the agent sees it (with `exposed` as its name): see [`Entry::write_to`].
    raw: Shown,
    /// For tools: the rewrite that applies to calls (pinned and hidden arguments).
    pub rewrite: Option<Arc<ToolRewrite>>,
    /// mcp-warden's own tool standing in for an upstream that waits for a sign-in and offered
    /// nothing yet ([`SIGN_IN_TOOL`]): a call is answered by mcp-warden, never forwarded.
    pub own: bool,
}

/// The original name of the tool that stands in for an upstream waiting for its first
/// sign-in (shown as `sign_in_<upstream>`).
pub const SIGN_IN_TOOL: &str = "mcp-warden/sign-in";

/// An item's bytes: the upstream's (a slice of the page they came in) or a rewritten copy.
/// When only the name changes, `name` is where the upstream's name is, and the entry's
/// exposed name is written there when the list is sent, so that building a list copies
/// nothing for the items it merely renames.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    bytes: Bytes,
    name: Option<std::ops::Range<usize>>,
}

impl Shown {
    fn whole(bytes: Bytes) -> Self {
        Self { bytes, name: None }
    }
}

impl Entry {
    /// Appends the item as the agent sees it (JSON) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let Some(span) = &self.raw.name else {
            out.extend_from_slice(&self.raw.bytes);
            return;
        };
        out.extend_from_slice(&self.raw.bytes[..span.start]);
        mcp::push_json_str(&self.exposed, |p| out.extend_from_slice(p.as_bytes()));
        out.extend_from_slice(&self.raw.bytes[span.end..]);
    }

    /// About how many bytes [`Entry::write_to`] appends.
    pub fn size_hint(&self) -> usize {
        self.raw.bytes.len() + self.exposed.len()
    }

    /// The item as the agent sees it, in one buffer (a copy only when renamed).
    pub fn item(&self) -> Bytes {
        if self.raw.name.is_none() {
            return self.raw.bytes.clone();
        }
        let mut out = Vec::with_capacity(self.size_hint() + 2);
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

/// One merged list.
#[derive(Debug, Default)]
pub struct List {
    pub entries: Vec<Entry>,
    /// Positions in `entries`, hashed by exposed name (the names are not stored twice).
    index: hashbrown::HashTable<usize>,
    hasher: foldhash::fast::RandomState,
}

impl List {
    /// A list with nothing in it (before any upstream answered).
    pub fn empty() -> List {
        List {
            entries: vec![],
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn get(&self, exposed: &str) -> Option<&Entry> {
        self.find(self.hash(exposed), exposed)
    }

    /// For a server that serves MCP Apps (one of its tools links a `ui://` resource), the one
    /// entry it calls `original` when only a namespace prefix stands between that name and the
    /// exposed one: what an app's HTML calls (it knows its server's own names, not
    /// mcp-warden's `upstream__tool`). `None` when no visible entry or several match, when the
    /// operator renamed it (a renamed tool answers to its new name only), or for any other
    /// server (agents call exposed names, exactly). Everything reached this way is in the
    /// agent's list, with its policy: nothing hidden becomes callable.
    pub fn by_upstream_name(&self, original: &str) -> Option<&Entry> {
        let mut found = self.entries.iter().filter(|e| {
            e.original == original && e.rewrite.as_ref().is_none_or(|r| r.rename.is_none())
        });
        let one = found.next()?;
        if found.next().is_some() {
            return None;
        }
        let links_an_app = |e: &Entry| {
            serde_json::from_slice::<serde_json::Value>(&e.item()).is_ok_and(|t| {
                let meta = &t["_meta"];
                meta["ui"]["resourceUri"].is_string() || meta["ui/resourceUri"].is_string()
            })
        };
        self.entries
            .iter()
            .filter(|e| e.upstream == one.upstream)
            .any(links_an_app)
            .then_some(one)
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    fn find(&self, hash: u64, exposed: &str) -> Option<&Entry> {
        self.index
            .find(hash, |&i| self.entries[i].exposed == exposed)
            .map(|&i| &self.entries[i])
    }

    /// `wanted`, or the first free variant of it ([`naming::unique`]), and its hash.
    fn claim(&self, wanted: String) -> (String, u64) {
        let hash = self.hash(&wanted);
        if self.find(hash, &wanted).is_none() {
            return (wanted, hash);
        }
        let name = naming::unique(wanted, |n| self.get(n).is_some());
        let hash = self.hash(&name);
        (name, hash)
    }

    /// mcp-warden's own `sign_in_<upstream>` tool for upstream `idx` (`name`), which waits for
    /// its first sign-in: listed whatever the agent's tool rules (it reaches no upstream), it
    /// is how the agent learns where the sign-in is made.
    fn add_sign_in_tool(&mut self, idx: usize, name: &str) {
        let (exposed, hash) = self.claim(format!("sign_in_{name}"));
        let tool = serde_json::json!({
            "name": exposed,
            "title": format!("Sign in to {name}"),
            "description": format!("{name} needs a sign-in before its tools can be used. Call this tool to be pointed at the page where the sign-in is made; {name}'s tools are listed once it is."),
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        });
        self.push(
            hash,
            Entry {
                upstream: idx,
                original: SIGN_IN_TOOL.to_string(),
                exposed,
                raw: Shown::whole(Bytes::from(tool.to_string())),
                rewrite: None,
                own: true,
            },
        );
    }

    /// Adds `entry`, whose exposed name hashes to `hash` and is not taken yet.
    fn push(&mut self, hash: u64, entry: Entry) {
        let at = self.entries.len();
        self.entries.push(entry);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, at, |&i| hasher.hash_one(entries[i].exposed.as_str()));
    }

    /// The agent would see exactly the same list.
    pub fn same_view(&self, other: &List) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.exposed == b.exposed && a.raw == b.raw)
    }
}

/// Items fetched from one upstream: each item's bytes (a zero-copy slice of a page).
#[derive(Clone)]
pub struct Fetched {
    pub upstream: usize,
    /// The upstream's configuration as it is now.
    pub cfg: std::sync::Arc<crate::config::Upstream>,
    pub namespace: Option<String>,
    pub items: Vec<Bytes>,
    /// The upstream waits for a sign-in: `items` are its pins, and with none, mcp-warden's own
    /// sign-in tool stands in for it (the agent has something to call that says what to do).
    pub signed_out: bool,
}

/// Extracts the raw items of `kind` from a list page; returns the next cursor.
pub fn page_items(
    kind: ListKind,
    page: &Message,
    out: &mut Vec<Bytes>,
) -> Result<Option<String>, String> {
    let result = page.result().ok_or("list request failed")?;
    let view: mcp::ListPage<'_> =
        serde_json::from_str(result).map_err(|e| format!("malformed list result: {e}"))?;
    let items = match kind {
        ListKind::Tools => view.tools,
        ListKind::Prompts => view.prompts,
        ListKind::Resources => view.resources,
        ListKind::Templates => view.resource_templates,
    }
    .unwrap_or_default();
    for item in items {
        out.push(page.bytes().slice(page.span_of(item.get())));
    }
    Ok(view.next_cursor.filter(|c| !c.is_empty()))
}

fn key_of<'a>(kind: ListKind, k: &ItemKey<'a>) -> Option<&'a str> {
    match kind {
        ListKind::Tools | ListKind::Prompts => k.name,
        ListKind::Resources => k.uri,
        ListKind::Templates => k.uri_template,
    }
}

/// What decides an agent's view: the config and the agent (`None`: the single-user case).
pub struct PolicyCtx<'a> {
    pub agent: Option<&'a Agent>,
    /// Tool-definition pins; `None`: not pinned (no state directory).
    pub pins: Option<&'a crate::pins::PinStore>,
}

/// The upstream-level and agent-level rewrites of one tool, combined: the agent's fields win;
/// pins and hidden parameters add up.
fn combine(
    up: Option<&Arc<ToolRewrite>>,
    agent: Option<&Arc<ToolRewrite>>,
) -> Option<Arc<ToolRewrite>> {
    match (up, agent) {
        (None, None) => None,
        (Some(r), None) | (None, Some(r)) => Some(r.clone()),
        (Some(u), Some(a)) => {
            let mut out = ToolRewrite::clone(u);
            out.rename = a.rename.clone().or(out.rename);
            out.description = a.description.clone().or(out.description);
            out.title = a.title.clone().or(out.title);
            if let Some(ann) = &a.annotations {
                let mut merged = out.annotations.unwrap_or_default();
                merged.extend(ann.clone());
                out.annotations = Some(merged);
            }
            out.pin.extend(a.pin.clone());
            out.hide.extend(a.hide.iter().cloned());
            Some(Arc::new(out))
        }
    }
}

/// Merges fetched items in upstream order, keeping only what the agent may see. Tools and
/// prompts get exposed names (renamed, namespaced, provider-safe, unique); tools are rewritten
/// as configured; resources and templates keep their URIs (the first upstream listing a URI
/// serves it). Hidden items are skipped before names are assigned, so they take no name.
pub fn merge(kind: ListKind, fetched: Vec<Fetched>, ctx: &PolicyCtx<'_>) -> List {
    let total: usize = fetched.iter().map(|f| f.items.len()).sum();
    let mut list = List {
        entries: Vec::with_capacity(total),
        index: hashbrown::HashTable::with_capacity(total),
        hasher: foldhash::fast::RandomState::default(),
    };
    // The agent's rewrites by exposed name, hashed once per build (the config keeps them
    // ordered, which costs a dozen comparisons per lookup).
    let agent_rewrites: HashMap<&str, &Arc<ToolRewrite>, foldhash::fast::RandomState> =
        match (kind, ctx.agent) {
            (ListKind::Tools, Some(a)) => a.rewrite.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            _ => HashMap::default(),
        };
    // Pins are checked under one lock for the whole build; new ones are written at its end.
    let mut pin_batch = match (kind, ctx.pins) {
        (ListKind::Tools, Some(pins)) => Some(pins.batch()),
        _ => None,
    };
    for f in fetched {
        let up = f.cfg.clone();
        if kind == ListKind::Tools && f.signed_out && f.items.is_empty() {
            list.add_sign_in_tool(f.upstream, &up.name);
            continue;
        }
        let pin_key = pin_batch.as_ref().map(|_| up.pin_key()).unwrap_or_default();
        let mut pins = pin_batch.as_mut().map(|b| b.upstream(&pin_key));
        let profile = ctx
            .agent
            .and_then(|a| a.schema)
            .or(up.schema)
            .unwrap_or(SchemaProfile::Passthrough);
        // The Anthropic profile's skip test is made while the item is scanned.
        let check_schema = kind == ListKind::Tools && profile == SchemaProfile::Anthropic;
        for raw in f.items {
            let Ok(text) = std::str::from_utf8(&raw) else {
                tracing::warn!(?kind, "upstream listed an item that is not UTF-8; skipped");
                continue;
            };
            let Some(key) = ItemKey::scan(text, check_schema) else {
                tracing::warn!(
                    ?kind,
                    "upstream listed an item that is not an object; skipped"
                );
                continue;
            };
            let Some(key_raw) = key_of(kind, &key) else {
                tracing::warn!(?kind, "upstream listed an item without its key; skipped");
                continue;
            };
            let Some(original) = mcp::raw_str_text(key_raw) else {
                continue;
            };
            let mut rewrite = None;
            let (exposed, hash, raw) = match kind {
                ListKind::Tools => {
                    if let Some(pins) = &mut pins {
                        let Some(verdict) = pins.check_raw(&original, &raw) else {
                            continue;
                        };
                        if let crate::pins::Verdict::Changed { .. } = verdict {
                            if up.on_tool_change == ToolChange::Block {
                                continue; // hidden until an operator accepts the new definition
                            }
                        }
                    }
                    let up_rw = if up.tools.is_empty() {
                        None
                    } else {
                        up.tools.get(&original)
                    };
                    let base = up_rw.and_then(|r| r.rename.as_deref()).unwrap_or(&original);
                    let canonical = naming::exposed(f.namespace.as_deref(), base);
                    let agent_rw = agent_rewrites.get(canonical.as_str()).copied();
                    let renamed = agent_rw.and_then(|r| r.rename.as_deref());
                    let wanted = renamed.unwrap_or(&canonical);
                    // Each distinct name once (most tools are neither renamed nor namespaced
                    // differently from what they are called upstream).
                    let names: &[&str] = match (wanted == canonical, canonical == original) {
                        (true, true) => &[&canonical],
                        (true, false) => &[&canonical, &original],
                        (false, _) => &[&canonical, wanted, &original],
                    };
                    if !agent::tool_visible(ctx.agent, &up.name, names) {
                        continue;
                    }
                    let wanted = match renamed {
                        Some(r) => r.to_string(),
                        None => canonical,
                    };
                    let (exposed, hash) = list.claim(wanted);
                    let rw = combine(up_rw, agent_rw);
                    // A consent upstream's `confirmation_token` is never advertised.
                    let hides_token = up.consent && CONFIRMATION_TOKEN.find(&raw).is_some();
                    let raw = if rw.is_some() || hides_token || profile_may_change(&key, profile) {
                        match rewritten(text, rw.as_deref(), profile, &exposed) {
                            Ok(r) => Shown::whole(r),
                            Err(e) => {
                                tracing::warn!(upstream = %up.name, tool = %original, "tool hidden: {e}");
                                continue;
                            }
                        }
                    } else {
                        rename_raw(&raw, key_raw, &exposed, &original)
                    };
                    rewrite = rw;
                    (exposed, hash, raw)
                }
                ListKind::Prompts => {
                    let wanted = match &f.namespace {
                        Some(ns) => format!("{ns}{}{original}", naming::SEPARATOR),
                        None => original.clone(),
                    };
                    let rules = ctx.agent.and_then(|a| a.prompts.as_ref());
                    if !agent::item_visible(ctx.agent, &up.name, rules, &[&wanted, &original]) {
                        continue;
                    }
                    let (exposed, hash) = list.claim(wanted);
                    let raw = rename_raw(&raw, key_raw, &exposed, &original);
                    (exposed, hash, raw)
                }
                ListKind::Resources | ListKind::Templates => {
                    let rules = ctx.agent.and_then(|a| a.resources.as_ref());
                    if !agent::item_visible(ctx.agent, &up.name, rules, &[&original]) {
                        continue;
                    }
                    let hash = list.hash(&original);
                    if list.find(hash, &original).is_some() {
                        tracing::debug!(uri = %original, "URI listed by two upstreams; the first serves it");
                        continue;
                    }
                    (original.clone(), hash, Shown::whole(raw.clone()))
                }
            };
            list.push(
                hash,
                Entry {
                    upstream: f.upstream,
                    original,
                    exposed,
                    raw,
                    rewrite,
                    own: false,
                },
            );
        }
    }
    drop(pin_batch); // the tools seen for the first time, in one write
    list
}

/// The item, to be shown with its name replaced by `exposed` (nothing is copied).
fn rename_raw(raw: &Bytes, key_raw: &str, exposed: &str, original: &str) -> Shown {
    if exposed == original {
        return Shown::whole(raw.clone());
    }
    Shown {
        bytes: raw.clone(),
        name: mcp::span_in(raw, key_raw.as_bytes()),
    }
}

/// The searcher for the consent flow's parameter, built once.
static CONFIRMATION_TOKEN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"confirmation_token"));

/// Whether the schema profile could change this tool's input schema. A root that is already an
/// object schema with `properties`, no combinators, `$schema` or `$ref`, and every required key
/// defined, is left as it is by the Anthropic profile, so such tools skip the rewrite path
/// (most tools of most servers). Anything the scan cannot read plainly (escaped or duplicate
/// keys) counts as "could change".
fn profile_may_change(key: &ItemKey<'_>, profile: SchemaProfile) -> bool {
    match profile {
        SchemaProfile::Passthrough => false,
        // OpenAI's rules reach into nested schemas: always take the full path.
        SchemaProfile::OpenAi => true,
        // Found by the item scan (`mcp::is_plain_object_schema`).
        SchemaProfile::Anthropic => !key.plain_schema,
    }
}

/// The tool rewritten as configured: spliced into its own bytes when its shape allows
/// ([`fast`]), else decoded, rewritten and re-serialised. With debug logging on, every tool
/// takes the general path, whose notes say what the profile changed.
fn rewritten(
    raw: &str,
    rw: Option<&ToolRewrite>,
    profile: SchemaProfile,
    exposed: &str,
) -> Result<Bytes, String> {
    let default = ToolRewrite::default();
    let rw = rw.unwrap_or(&default);
    let (out, notes) = rewrite::rewrite_tool_bytes(raw.as_bytes(), rw, profile, exposed)?;
    for n in notes {
        tracing::debug!(tool = %exposed, "schema: {n}");
    }
    Ok(Bytes::from(out))
}

/// Matches a URI against an RFC 6570 template, treating each `{…}` expression as "any
/// non-empty text" (enough to route; the upstream validates the details).
pub fn template_matches(template: &str, uri: &str) -> bool {
    // Split into the literals around the expressions: [lit0, lit1, …, litN].
    let mut literals = vec![];
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => return false,
        }
    }
    literals.push(rest);
    if literals.len() == 1 {
        return template == uri;
    }
    match uri.strip_prefix(literals[0]) {
        Some(after) => match_rest(after, &literals[1..]),
        None => false,
    }
}

/// `s` starts with an expression (≥ 1 character) followed by `lits[0]`, and so on.
fn match_rest(s: &str, lits: &[&str]) -> bool {
    let Some((lit, more)) = lits.split_first() else {
        return false;
    };
    if more.is_empty() {
        return s.len() > lit.len() && s.ends_with(lit);
    }
    s.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .filter(|&i| i > 0 && s[i..].starts_with(lit))
        .any(|i| match_rest(&s[i + lit.len()..], more))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cfg() -> crate::config::Config {
        crate::config::Config::parse(
            "[upstreams.a]\ncommand = \"x\"\n[upstreams.b]\ncommand = \"y\"\n",
            &|_| None,
        )
        .unwrap()
    }

    fn fetched(upstream: usize, ns: Option<&str>, items: &[&str]) -> Fetched {
        Fetched {
            upstream,
            cfg: std::sync::Arc::new(cfg().upstreams[upstream].clone()),
            namespace: ns.map(String::from),
            items: items
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
            signed_out: false,
        }
    }

    #[test]
    fn tools_are_namespaced_and_kept_raw() {
        let list = merge(
            ListKind::Tools,
            vec![
                fetched(
                    0,
                    Some("a"),
                    &[r#"{"name":"echo","inputSchema":{"x":1e400,"big":123456789012345678901}}"#],
                ),
                fetched(1, Some("b"), &[r#"{"name":"echo"}"#, r#"{"nope":1}"#]),
            ],
            &PolicyCtx {
                agent: None,
                pins: None,
            },
        );
        assert_eq!(list.entries.len(), 2);
        assert_eq!(list.entries[0].exposed, "a__echo");
        assert_eq!(
            std::str::from_utf8(&list.entries[0].item()).unwrap(),
            r#"{"name":"a__echo","inputSchema":{"x":1e400,"big":123456789012345678901}}"#
        );
        assert_eq!(list.get("b__echo").unwrap().upstream, 1);
        assert_eq!(list.get("b__echo").unwrap().original, "echo");
    }

    #[test]
    fn collisions_without_namespace() {
        let list = merge(
            ListKind::Tools,
            vec![
                fetched(0, None, &[r#"{"name":"x.y"}"#]),
                fetched(1, None, &[r#"{"name":"x_y"}"#]),
            ],
            &PolicyCtx {
                agent: None,
                pins: None,
            },
        );
        let names: Vec<_> = list.entries.iter().map(|e| e.exposed.as_str()).collect();
        assert_eq!(names, ["x_y", "x_y_2"]);
        assert_eq!(list.get("x_y_2").unwrap().original, "x_y");
    }

    #[test]
    fn renamed_items_are_written_with_their_new_name() {
        let ctx = PolicyCtx {
            agent: None,
            pins: None,
        };
        // A prompt's exposed name is not sanitised: one that needs escaping is escaped where
        // it is written; the rest of the item stays byte for byte.
        let list = merge(
            ListKind::Prompts,
            vec![fetched(
                0,
                Some("a"),
                &[r#"{ "description" : "d\u00e9j\u00e0",  "name":"q\"uo\\te", "x":[1, 2] }"#],
            )],
            &ctx,
        );
        let e = &list.entries[0];
        assert_eq!(e.exposed, "a__q\"uo\\te");
        let written = e.item();
        assert_eq!(
            std::str::from_utf8(&written).unwrap(),
            r#"{ "description" : "d\u00e9j\u00e0",  "name":"a__q\"uo\\te", "x":[1, 2] }"#
        );
        let mut body = Vec::new();
        e.write_to(&mut body);
        assert_eq!(body, written);
        assert!(e.size_hint() + 2 >= written.len());
        // An unchanged name shares the upstream's bytes.
        let list = merge(
            ListKind::Tools,
            vec![fetched(0, None, &[r#"{"name":"plain"}"#])],
            &ctx,
        );
        assert_eq!(&list.entries[0].item()[..], br#"{"name":"plain"}"#);
    }

    #[test]
    fn templates() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/123/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template//data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://other/1/data"
        ));
        assert!(template_matches("demo://item/{id}", "demo://item/7"));
        assert!(!template_matches("demo://item/{id}", "demo://item/"));
        assert!(template_matches("file:///{path}", "file:///a/b"));
        assert!(template_matches("x://plain", "x://plain"));
    }
}
