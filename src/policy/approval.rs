//! Operator approval rules (`[[approvals.require]]`): which calls wait for a human *before*
//! they are forwarded. Pure: the rules are compiled at config load (tool globs into
//! [`crate::glob::Pattern`]s), and a call is judged from its names and, only when a rule needs them, its
//! tool's annotations.
//!
//! Owns: what a rule matches. Must not: hold calls or talk to anyone (that is
//! `crate::approval`).

use crate::config::RequireRule;

/// The call being judged.
pub struct Call<'a> {
    pub agent: &'a str,
    pub upstream: &'a str,
    /// The tool's name as the agent sees it, and as its upstream calls it.
    pub exposed: &'a str,
    pub original: &'a str,
}

/// Whether any rule holds `call`. `annotation(name)`: whether the tool's annotation `name` is
/// `true`; asked only for a rule whose other fields all match (so a call under no annotation
/// rule never has its tool definition read).
pub fn requires_approval(
    rules: &[RequireRule],
    call: &Call<'_>,
    mut annotation: impl FnMut(&str) -> bool,
) -> bool {
    rules.iter().any(|r| {
        (r.agents.is_empty() || r.agents.iter().any(|a| a == call.agent))
            && (r.upstreams.is_empty() || r.upstreams.iter().any(|u| u == call.upstream))
            && (r.tools.is_empty()
                || r.tools
                    .iter()
                    .any(|p| p.matches(call.exposed) || p.matches(call.original)))
            && (r.annotations.is_empty() || r.annotations.iter().any(|a| annotation(a)))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::glob::Pattern;

    fn rule(
        tools: &[&str],
        annotations: &[&str],
        agents: &[&str],
        upstreams: &[&str],
    ) -> RequireRule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        RequireRule {
            tools: tools.iter().map(|t| Pattern::new(*t)).collect(),
            annotations: s(annotations),
            agents: s(agents),
            upstreams: s(upstreams),
        }
    }

    fn call<'a>(
        agent: &'a str,
        upstream: &'a str,
        exposed: &'a str,
        original: &'a str,
    ) -> Call<'a> {
        Call {
            agent,
            upstream,
            exposed,
            original,
        }
    }

    #[test]
    fn every_given_field_must_match() {
        let rules = [rule(&["fs__delete*"], &[], &["router"], &["fs"])];
        let none = |_: &str| false;
        assert!(requires_approval(
            &rules,
            &call("router", "fs", "fs__delete_file", "delete_file"),
            none
        ));
        assert!(!requires_approval(
            &rules,
            &call("other", "fs", "fs__delete_file", "delete_file"),
            none
        ));
        assert!(!requires_approval(
            &rules,
            &call("router", "git", "fs__delete_file", "delete_file"),
            none
        ));
        assert!(!requires_approval(
            &rules,
            &call("router", "fs", "fs__read", "read"),
            none
        ));
        // The upstream's own name matches too.
        let rules = [rule(&["delete_*"], &[], &[], &[])];
        assert!(requires_approval(
            &rules,
            &call("a", "fs", "renamed", "delete_all"),
            none
        ));
    }

    #[test]
    fn annotations_are_read_only_when_the_rest_matches() {
        let rules = [rule(&[], &["destructiveHint"], &["router"], &[])];
        let mut asked = 0;
        assert!(!requires_approval(
            &rules,
            &call("other", "u", "t", "t"),
            |_| {
                asked += 1;
                true
            }
        ));
        assert_eq!(asked, 0);
        assert!(requires_approval(
            &rules,
            &call("router", "u", "t", "t"),
            |a| {
                asked += 1;
                a == "destructiveHint"
            }
        ));
        assert_eq!(asked, 1);
        assert!(!requires_approval(
            &rules,
            &call("router", "u", "t", "t"),
            |_| false
        ));
        assert!(!requires_approval(
            &[],
            &call("router", "u", "t", "t"),
            |_| true
        ));
    }
}
