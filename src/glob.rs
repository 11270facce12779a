//! Globs over names (`*`, `?`), compiled once at config load: [`Pattern`]. Used by the
//! config (agents' visibility rules, approval rules) and the policy that applies them.
//!
//! Must not: depend on anything in this crate.

/// `*` matches any run of characters (also none), `?` exactly one; everything else matches
/// itself, case-sensitively. Patterns are matched against whole names.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == name;
    }
    if pattern.is_ascii() && name.is_ascii() {
        return glob_units(pattern.as_bytes(), name.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_units(&p, &n, '*', '?')
}

/// A glob compiled once (at config load): the common shapes — an exact name, `prefix*`,
/// `*suffix`, `*infix*`, `*` — match without the general matcher. Same semantics as
/// [`glob_match`].
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    shape: Shape,
    /// For `*infix*`: a searcher built once (a plain `contains` rebuilds one per name).
    infix: Option<memchr::memmem::Finder<'static>>,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.text == other.text
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Exact,
    /// The text between `start..end` is the literal part.
    Prefix(usize),
    Suffix(usize),
    Infix(usize, usize),
    Any,
    General,
}

impl Pattern {
    pub fn new(text: impl Into<String>) -> Pattern {
        let text = text.into();
        let shape = if !text.contains(['*', '?']) {
            Shape::Exact
        } else if text.contains('?') {
            Shape::General
        } else {
            let lead = text.len() - text.trim_start_matches('*').len();
            let trail = text.len() - text.trim_end_matches('*').len();
            let inner = text.trim_matches('*');
            match (inner.is_empty(), inner.contains('*'), lead > 0, trail > 0) {
                (true, _, _, _) => Shape::Any,
                (_, true, _, _) => Shape::General,
                (_, _, false, true) => Shape::Prefix(text.len() - trail),
                (_, _, true, false) => Shape::Suffix(lead),
                (_, _, true, true) => Shape::Infix(lead, text.len() - trail),
                (_, _, false, false) => Shape::Exact, // unreachable: it had a `*`
            }
        };
        let infix = match shape {
            Shape::Infix(start, end) => {
                Some(memchr::memmem::Finder::new(&text.as_bytes()[start..end]).into_owned())
            }
            _ => None,
        };
        Pattern { text, shape, infix }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        let t = self.text.as_str();
        match self.shape {
            Shape::Exact => t == name,
            Shape::Prefix(end) => name.starts_with(&t[..end]),
            Shape::Suffix(start) => name.ends_with(&t[start..]),
            Shape::Infix(start, end) => {
                let (hay, lit) = (name.as_bytes(), &t.as_bytes()[start..end]);
                match &self.infix {
                    // Most names are short: a plain look at each position beats a searcher's
                    // set-up there.
                    Some(f) if hay.len() > 64 => f.find(hay).is_some(),
                    _ => contains_short(hay, lit),
                }
            }
            Shape::Any => true,
            Shape::General => glob_match(t, name),
        }
    }
}

/// Whether `lit` occurs in `hay`, trying each position.
fn contains_short(hay: &[u8], lit: &[u8]) -> bool {
    let Some((&first, rest)) = lit.split_first() else {
        return true;
    };
    hay.len() >= lit.len()
        && (0..=hay.len() - lit.len())
            .any(|i| hay[i] == first && &hay[i + 1..i + lit.len()] == rest)
}

impl std::borrow::Borrow<str> for Pattern {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The matcher over any unit (bytes for ASCII, chars otherwise).
fn glob_units<T: PartialEq + Copy>(p: &[T], n: &[T], star_unit: T, any: T) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && p[pi] == star_unit {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && (p[pi] == any || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == star_unit {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("fs__*", "fs__read"));
        assert!(!glob_match("fs__*", "FS__read"));
        assert!(glob_match("*_file", "read_file"));
        assert!(glob_match("r?ad", "read"));
        assert!(!glob_match("read", "read2"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("**", "anything"));
        assert!(
            glob_match("é*", "éte"),
            "non-ASCII names match by character"
        );
        assert!(glob_match("?t", "ét"));
        assert!(!glob_match("?t", "ééte"));
    }

    proptest::proptest! {
        #[test]
        fn compiled_patterns_agree_with_the_general_matcher(pattern in "[ab_*?]{0,8}", name in "[ab_é]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let n: Vec<char> = name.chars().collect();
            proptest::prop_assert_eq!(Pattern::new(pattern.clone()).matches(&name), glob_units(&p, &n, '*', '?'));
        }

        #[test]
        fn star_matches_everything_and_literal_matches_itself(name in "\\PC{0,40}") {
            proptest::prop_assert!(glob_match("*", &name));
            let literal: String = name.chars().filter(|c| *c != '*' && *c != '?').collect();
            proptest::prop_assert!(glob_match(&literal, &literal));
        }
    }
}
