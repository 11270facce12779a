//! The modules' "must not" rules (their `//!` headers), kept true: a module that must not
//! depend on another names none of its paths. Read from the sources, comments skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

fn sources(under: &Path) -> Vec<PathBuf> {
    if under.is_file() {
        return vec![under.to_path_buf()];
    }
    let mut out = vec![];
    for e in std::fs::read_dir(under).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// Every `crate::NAME` a file's code (not its comments) uses.
fn uses(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut found = vec![];
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((n + 1, name));
            rest = after;
        }
    }
    found
}

#[test]
fn modules_keep_their_must_not_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // (where, the modules it must not use, why)
    let rules: &[(&str, &[&str], &str)] = &[
        (
            "policy",
            &[
                "session",
                "upstream",
                "downstream",
                "approval",
                "pins",
                "state",
                "metrics",
                "cli",
            ],
            "policy is pure decisions, no I/O",
        ),
        (
            "jsonrpc",
            &[
                "session",
                "upstream",
                "downstream",
                "approval",
                "policy",
                "mcp",
            ],
            "framing knows no protocol above it",
        ),
        (
            "sse",
            &["session", "upstream", "downstream", "approval", "policy"],
            "a parser",
        ),
        (
            "mcp",
            &[
                "session",
                "upstream",
                "downstream",
                "approval",
                "config",
                "policy",
            ],
            "views of messages",
        ),
        (
            "session",
            &["downstream", "cli"],
            "a session knows no transport",
        ),
        (
            "approval",
            &["downstream", "session", "cli"],
            "the broker knows no front",
        ),
        (
            "upstream",
            &["downstream", "session", "approval", "cli"],
            "connections know no session",
        ),
        (
            "identity.rs",
            &["downstream", "session"],
            "who is calling, from the credential alone",
        ),
        (
            "oidc_login.rs",
            &["downstream", "session", "approval"],
            "a person proving who they are knows no front, session or broker",
        ),
        (
            "error.rs",
            &["downstream", "session"],
            "the mapping knows no front",
        ),
        (
            "metrics.rs",
            &["approval", "session", "downstream"],
            "counters only",
        ),
        (
            "instance.rs",
            &["downstream", "cli"],
            "an instance's wiring knows no front",
        ),
        (
            "config",
            &[
                "policy",
                "tls",
                "session",
                "upstream",
                "downstream",
                "approval",
                "cli",
            ],
            "configuration is data: what acts on it depends on it, not the reverse",
        ),
        ("glob.rs", &["*"], "a matcher that depends on nothing here"),
        ("util.rs", &["*"], "helpers depend on nothing here"),
    ];
    let mut broken = vec![];
    for (place, forbidden, why) in rules {
        for file in sources(&src.join(place)) {
            for (line, name) in uses(&file) {
                if forbidden.contains(&"*") || forbidden.contains(&name.as_str()) {
                    broken.push(format!(
                        "{}:{line}: uses crate::{name} ({why})",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
