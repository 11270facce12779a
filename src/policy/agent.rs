//! Who may see what: deny-by-default visibility of upstreams, tools, prompts and resources for
//! one agent. Pure functions over the config; the session applies them when it builds an
//! agent's lists, so a hidden item is *absent* — not listed, and not callable.

use crate::config::{Agent, Rules};
use crate::glob::Pattern;

fn any_match(patterns: &[Pattern], names: &[&str]) -> bool {
    patterns.iter().any(|p| names.iter().any(|n| p.matches(n)))
}

/// The agent may use this upstream at all. No agent (the single-user case): every upstream.
pub fn server_allowed(agent: Option<&Agent>, upstream: &str) -> bool {
    match agent {
        None => true,
        Some(a) => a
            .servers
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == upstream)),
    }
}

/// A tool is visible when its upstream is allowed, some allow pattern matches one of its names
/// (exposed or the upstream's own), and no deny pattern does. Deny wins; no allow rule, no tool.
pub fn tool_visible(agent: Option<&Agent>, upstream: &str, names: &[&str]) -> bool {
    let Some(a) = agent else { return true };
    server_allowed(agent, upstream)
        && any_match(&a.tools.allow, names)
        && !any_match(&a.tools.deny, names)
}

/// Prompts and resources follow `servers`; their own rules, if given, narrow further (an empty
/// allow list there means "all of the allowed servers'").
pub fn item_visible(
    agent: Option<&Agent>,
    upstream: &str,
    rules: Option<&Rules>,
    names: &[&str],
) -> bool {
    if !server_allowed(agent, upstream) {
        return false;
    }
    match rules {
        None => true,
        Some(r) => (r.allow.is_empty() || any_match(&r.allow, names)) && !any_match(&r.deny, names),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Agent;

    fn agent(servers: Option<&[&str]>, allow: &[&str], deny: &[&str]) -> Agent {
        Agent {
            name: "a".into(),
            tokens: vec![],
            cert_names: vec![],
            claims: vec![],
            scopes: vec![],
            servers: servers.map(|s| s.iter().map(|x| x.to_string()).collect()),
            tools: Rules {
                allow: allow.iter().map(|x| Pattern::new(*x)).collect(),
                deny: deny.iter().map(|x| Pattern::new(*x)).collect(),
            },
            prompts: None,
            resources: None,
            schema: None,
            rewrite: Default::default(),
        }
    }

    #[test]
    fn deny_by_default_and_deny_wins() {
        let none = agent(None, &[], &[]);
        assert!(!tool_visible(Some(&none), "m365", &["m365__send", "send"]));
        let a = agent(Some(&["ev"]), &["ev__*"], &["ev__get-env"]);
        assert!(tool_visible(Some(&a), "ev", &["ev__echo", "echo"]));
        assert!(!tool_visible(Some(&a), "ev", &["ev__get-env", "get-env"]));
        assert!(
            !tool_visible(Some(&a), "other", &["ev__echo", "echo"]),
            "server not allowed"
        );
        // Matching the upstream's own name counts too.
        let b = agent(None, &["echo"], &[]);
        assert!(tool_visible(Some(&b), "ev", &["ev__echo", "echo"]));
        assert!(
            !tool_visible(Some(&b), "ev", &["ev__Echo", "Echo"]),
            "case matters"
        );
        assert!(tool_visible(None, "any", &["x"]), "single-user sees all");
    }
}
