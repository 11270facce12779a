//! `[agents.NAME]`: who an agent is (tokens, certificate names) and what it may see.

use super::tools::{rewrite, schema_profile};
use super::*;

pub(super) const AGENT_KEYS: &[&str] = &[
    "cert_names",
    "token_env",
    "token_sha256",
    "match",
    "scopes",
    "servers",
    "tools",
    "prompts",
    "resources",
    "schema",
];
pub(super) const AGENT_TOOL_KEYS: &[&str] = &["allow", "deny", "rewrite"];
pub(super) const RULE_KEYS: &[&str] = &["allow", "deny"];

pub(super) fn rules(cx: &mut Ctx, mut t: Table, known: &[&'static str]) -> Rules {
    let allow = t.strings(cx, "allow").unwrap_or_default();
    let deny = t.strings(cx, "deny").unwrap_or_default();
    for (key, list) in [("allow", &allow), ("deny", &deny)] {
        for (i, p) in list.iter().enumerate() {
            if p.is_empty() {
                cx.err(&format!("{}[{i}]", t.at(key)), "empty pattern");
            }
        }
    }
    t.finish(cx, known);
    Rules {
        allow: patterns(allow),
        deny: patterns(deny),
    }
}

pub(super) fn agent(
    cx: &mut Ctx,
    name: &str,
    mut t: Table,
    upstreams: &[Upstream],
) -> Option<Agent> {
    let before = cx.errors.len();
    let tokens = tokens(cx, &mut t);
    let cert_names = t.strings(cx, "cert_names").unwrap_or_default();
    let claims = super::auth::claim_matches(cx, &mut t);
    let scopes = t.strings(cx, "scopes").unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if !super::auth::valid_scope(s) {
            cx.err(&format!("{}[{i}]", t.at("scopes")), "not a valid scope");
        }
    }
    let servers = t.strings(cx, "servers");
    if let Some(list) = &servers {
        for (i, s) in list.iter().enumerate() {
            if !upstreams.iter().any(|u| &u.name == s) {
                cx.err(
                    &format!("{}[{i}]", t.at("servers")),
                    format!("no upstream named `{s}`"),
                );
            }
        }
    }
    let mut tool_rules = Rules::default();
    let mut rewrites = std::collections::BTreeMap::new();
    if let Some(mut tt) = t.table(cx, "tools") {
        tool_rules.allow = patterns(tt.strings(cx, "allow").unwrap_or_default());
        tool_rules.deny = patterns(tt.strings(cx, "deny").unwrap_or_default());
        if let Some(rt) = tt.table(cx, "rewrite") {
            for (tool, v) in rt.t {
                let p = join(&rt.path, tool);
                match v {
                    toml::Value::Table(x) => {
                        if let Some(rw) = rewrite(cx, Table::new(p, x)) {
                            rewrites.insert(tool.clone(), std::sync::Arc::new(rw));
                        }
                    }
                    other => cx.err(&p, format!("expected a table, found {}", type_name(other))),
                }
            }
        }
        tt.finish(cx, AGENT_TOOL_KEYS);
    }
    let prompts = t.table(cx, "prompts").map(|pt| rules(cx, pt, RULE_KEYS));
    let resources = t.table(cx, "resources").map(|rt| rules(cx, rt, RULE_KEYS));
    let schema = schema_profile(cx, &mut t);
    t.finish(cx, AGENT_KEYS);
    (cx.errors.len() == before).then(|| Agent {
        name: name.to_string(),
        tokens,
        cert_names,
        claims,
        scopes,
        servers,
        tools: tool_rules,
        prompts,
        resources,
        schema,
        rewrite: rewrites,
    })
}
