//! Tool rewrites and schema profiles, written the same way for a server and for an agent.

use super::*;

pub(super) const REWRITE_KEYS: &[&str] = &[
    "rename",
    "description",
    "title",
    "annotations",
    "pin",
    "hide",
];

pub(super) fn schema_profile(cx: &mut Ctx, t: &mut Table) -> Option<SchemaProfile> {
    match t.string(cx, "schema").as_deref() {
        None => None,
        Some("passthrough") => Some(SchemaProfile::Passthrough),
        Some("anthropic") => Some(SchemaProfile::Anthropic),
        Some("openai") => Some(SchemaProfile::OpenAi),
        Some(other) => {
            cx.err(
                &t.at("schema"),
                format!("unknown profile `{other}` (expected anthropic, openai or passthrough)"),
            );
            None
        }
    }
}

pub(super) fn rewrite(cx: &mut Ctx, mut t: Table) -> Option<ToolRewrite> {
    let before = cx.errors.len();
    let mut rw = ToolRewrite {
        rename: t.string(cx, "rename"),
        description: t.string(cx, "description"),
        title: t.string(cx, "title"),
        ..Default::default()
    };
    if let Some(r) = &rw.rename {
        if !crate::mcp::names::is_provider_safe(r) {
            cx.err(
                &t.at("rename"),
                "must match ^[a-zA-Z0-9_-]{1,64}$ (a name every LLM provider accepts)",
            );
        }
    }
    if let Some(a) = t.table(cx, "annotations") {
        rw.annotations = Some(a.t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect());
    }
    if let Some(p) = t.table(cx, "pin") {
        rw.pin = p.t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
    }
    rw.hide = t.strings(cx, "hide").unwrap_or_default();
    for never in crate::mcp::NEVER_ADVERTISED {
        if rw.pin.contains_key(*never) || rw.hide.iter().any(|h| h == never) {
            cx.err(
                &t.at("pin"),
                format!("`{never}` belongs to the consent flow and cannot be pinned or hidden"),
            );
        }
    }
    for h in &rw.hide {
        if rw.pin.contains_key(h) {
            cx.err(&t.at("hide"), format!("`{h}` is both pinned and hidden"));
        }
    }
    t.finish(cx, REWRITE_KEYS);
    (cx.errors.len() == before).then_some(rw)
}
