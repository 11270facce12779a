//! `[approvals]` and `[operators.NAME]`: how held calls are decided, and by whom.

use super::*;

pub(super) const APPROVAL_KEYS: &[&str] = &[
    "default_expiry_secs",
    "max_expiry_secs",
    "progress_interval_secs",
    "require",
    "webhooks",
    "openclaw",
    "grant_ttl_secs",
    "grant_scope",
];
pub(super) const REQUIRE_KEYS: &[&str] = &["tools", "annotations", "agents", "upstreams"];
pub(super) const WEBHOOK_KEYS: &[&str] = &["url", "secret_env"];
pub(super) const OPENCLAW_KEYS: &[&str] = &["url", "token_env", "connect_timeout_secs"];
pub(super) const OPERATOR_KEYS: &[&str] = &["token_env", "token_sha256"];

/// `[approvals]`: expiry, grants, operator rules (`[[approvals.require]]`) and webhooks.
pub(super) fn approvals(cx: &mut Ctx, mut t: Table) -> ApprovalSettings {
    let mut approvals = ApprovalSettings::default();
    if let Some(d) = t.secs(cx, "default_expiry_secs", 24 * 3600) {
        approvals.default_expiry = d;
    }
    if let Some(d) = t.secs(cx, "max_expiry_secs", 7 * 24 * 3600) {
        approvals.max_expiry = d;
    }
    if let Some(d) = t.secs(cx, "progress_interval_secs", 3600) {
        approvals.progress_interval = d;
    }
    approvals.grant_ttl = t.secs(cx, "grant_ttl_secs", 365 * 24 * 3600);
    match t.string(cx, "grant_scope").as_deref() {
        None | Some("tool") => {}
        Some("arguments") => approvals.grant_per_arguments = true,
        Some(other) => cx.err(
            &t.at("grant_scope"),
            format!("unknown scope `{other}` (expected tool or arguments)"),
        ),
    }
    let path = t.at("require");
    match t.get("require") {
        None => {}
        Some(toml::Value::Array(rules)) => {
            for (i, r) in rules.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let toml::Value::Table(rt) = r else {
                    cx.err(&p, "expected a table");
                    continue;
                };
                let mut rt = Table::new(p.clone(), rt);
                let rule = crate::config::RequireRule {
                    tools: rt
                        .strings(cx, "tools")
                        .unwrap_or_default()
                        .into_iter()
                        .map(crate::glob::Pattern::new)
                        .collect(),
                    annotations: rt.strings(cx, "annotations").unwrap_or_default(),
                    agents: rt.strings(cx, "agents").unwrap_or_default(),
                    upstreams: rt.strings(cx, "upstreams").unwrap_or_default(),
                };
                if rule.tools.is_empty()
                    && rule.annotations.is_empty()
                    && rule.agents.is_empty()
                    && rule.upstreams.is_empty()
                {
                    cx.err(&p, "an empty rule would hold every call; name tools, annotations, agents or upstreams");
                }
                rt.finish(cx, REQUIRE_KEYS);
                approvals.require.push(rule);
            }
        }
        Some(other) => cx.err(
            &path,
            format!(
                "expected an array of tables ([[approvals.require]]), found {}",
                type_name(other)
            ),
        ),
    }
    let path = t.at("webhooks");
    match t.get("webhooks") {
        None => {}
        Some(toml::Value::Array(hooks)) => {
            for (i, h) in hooks.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let toml::Value::Table(ht) = h else {
                    cx.err(&p, "expected a table");
                    continue;
                };
                let mut ht = Table::new(p.clone(), ht);
                let url = ht.string(cx, "url");
                let secret_env = ht.string(cx, "secret_env");
                ht.finish(cx, WEBHOOK_KEYS);
                let Some(url) = url else {
                    cx.err(&p, "missing `url`");
                    continue;
                };
                let scheme_ok =
                    reqwest::Url::parse(&url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !scheme_ok {
                    cx.err(&format!("{p}.url"), "must be an http:// or https:// URL");
                    continue;
                }
                let Some(var) = secret_env else {
                    cx.err(&p, "missing `secret_env` (the environment variable holding the signing secret)");
                    continue;
                };
                match (cx.env)(&var) {
                    Some(sec) if sec.len() >= 16 => {
                        approvals.webhooks.push(crate::config::Webhook {
                            url,
                            secret: Secret::new(sec),
                        })
                    }
                    Some(_) => cx.err(
                        &format!("{p}.secret_env"),
                        format!("the secret in `{var}` is too short (at least 16 characters)"),
                    ),
                    None => cx.err(
                        &format!("{p}.secret_env"),
                        format!("environment variable `{var}` is not set"),
                    ),
                }
            }
        }
        Some(other) => cx.err(
            &path,
            format!(
                "expected an array of tables ([[approvals.webhooks]]), found {}",
                type_name(other)
            ),
        ),
    }
    if let Some(toml::Value::Table(ot)) = t.get("openclaw") {
        let mut ot = Table::new(t.at("openclaw"), ot);
        approvals.openclaw = openclaw(cx, &mut ot);
        ot.finish(cx, OPENCLAW_KEYS);
    } else if let Some(other) = t.get("openclaw") {
        cx.err(
            &t.at("openclaw"),
            format!(
                "expected a table ([approvals.openclaw]), found {}",
                type_name(other)
            ),
        );
    }
    t.finish(cx, APPROVAL_KEYS);
    approvals
}

/// `[approvals.openclaw]`: the gateway's WebSocket and its token (from the environment).
fn openclaw(cx: &mut Ctx, t: &mut Table) -> Option<crate::config::OpenClawChannel> {
    let url = t.string(cx, "url");
    let token_env = t.string(cx, "token_env");
    let connect_timeout = t
        .secs(cx, "connect_timeout_secs", 300)
        .unwrap_or(Duration::from_secs(10));
    let Some(url) = url else {
        cx.err(
            &t.at("url"),
            "missing `url` (the gateway's ws:// or wss:// address)",
        );
        return None;
    };
    if !reqwest::Url::parse(&url).is_ok_and(|u| matches!(u.scheme(), "ws" | "wss")) {
        cx.err(&t.at("url"), "must be a ws:// or wss:// URL");
        return None;
    }
    let Some(var) = token_env else {
        cx.err(
            &t.at("token_env"),
            "missing `token_env` (the environment variable holding the gateway's token)",
        );
        return None;
    };
    match (cx.env)(&var) {
        Some(token) if !token.is_empty() => Some(crate::config::OpenClawChannel {
            url,
            token: Secret::new(token),
            connect_timeout,
        }),
        _ => {
            cx.err(
                &t.at("token_env"),
                format!("environment variable `{var}` is not set"),
            );
            None
        }
    }
}

/// `[operators.NAME]`: the people who decide held calls, by token.
pub(super) fn operators(cx: &mut Ctx, t: Table) -> Vec<Operator> {
    let mut operators = vec![];
    for (name, v) in t.t {
        let path = join("operators", name);
        let toml::Value::Table(ot) = v else {
            cx.err(&path, format!("expected a table, found {}", type_name(v)));
            continue;
        };
        let mut ot = Table::new(path.clone(), ot);
        let tokens = tokens(cx, &mut ot);
        ot.finish(cx, OPERATOR_KEYS);
        if tokens.is_empty() {
            cx.err(&path, "an operator needs `token_env` or `token_sha256`");
        }
        operators.push(crate::config::Operator {
            name: name.clone(),
            tokens,
        });
    }
    operators
}
