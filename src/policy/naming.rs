//! Exposed names: always valid for every LLM provider (`^[a-zA-Z0-9_-]{1,64}$`), namespaced
//! `prefix__name` when several upstreams share the endpoint, with deterministic collision
//! handling: the same inputs in the same order always give the same names.

pub use crate::mcp::names::{is_provider_safe, safe_byte, MAX_LEN};
pub const SEPARATOR: &str = "__";

/// FNV-1a: a small, stable hash (stable across versions and platforms, unlike `DefaultHasher`)
/// used to keep shortened names distinct.
fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Maps any string to a provider-safe name: invalid characters become `_`; a name too long is
/// cut and suffixed with a hash of the full name so that distinct long names stay distinct.
pub fn sanitize(raw: &str) -> String {
    sanitize_owned(raw.to_string())
}

/// [`sanitize`] of a name already owned: short ASCII names (nearly all) are fixed in place.
fn sanitize_owned(name: String) -> String {
    if is_provider_safe(&name) {
        return name;
    }
    if !name.is_empty() && name.len() <= MAX_LEN && name.is_ascii() {
        let mut bytes = name.into_bytes();
        for b in &mut bytes {
            if !safe_byte(*b) {
                *b = b'_';
            }
        }
        // ASCII in, ASCII out: always UTF-8.
        return String::from_utf8(bytes).unwrap_or_default();
    }
    // One `_` per invalid character (not per byte): never longer than `name`.
    let mut out = String::with_capacity(name.len());
    out.extend(name.chars().map(|c| {
        if c.is_ascii() && safe_byte(c as u8) {
            c
        } else {
            '_'
        }
    }));
    if out.is_empty() {
        out.push('_');
    }
    if out.len() > MAX_LEN {
        // Every character is ASCII here, so byte truncation is safe.
        out.truncate(MAX_LEN - 9);
        out.push('_');
        out.push_str(&format!("{:08x}", fnv1a(&name)));
    }
    out
}

/// The exposed name of an upstream item before collision handling.
pub fn exposed(namespace: Option<&str>, original: &str) -> String {
    match namespace {
        Some(ns) => {
            let mut joined = String::with_capacity(ns.len() + SEPARATOR.len() + original.len());
            joined.push_str(ns);
            joined.push_str(SEPARATOR);
            joined.push_str(original);
            sanitize_owned(joined)
        }
        None => sanitize(original),
    }
}

/// Unique names, assigned in order: the first holder of a name keeps it; later ones get
/// `wanted_2`, `wanted_3`, … (cut to fit 64 characters) — the first that is not `taken`. The
/// caller keeps the names given out (the list's own index).
pub fn unique(wanted: String, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&wanted) {
        return wanted;
    }
    for n in 2u32.. {
        let suffix = format!("_{n}");
        let mut candidate = wanted.clone();
        candidate.truncate(MAX_LEN - suffix.len());
        candidate.push_str(&suffix);
        if !taken(&candidate) {
            return candidate;
        }
    }
    unreachable!("u32 range exhausted")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn namespacing_and_sanitising() {
        assert_eq!(exposed(None, "echo"), "echo");
        assert_eq!(exposed(Some("fs"), "read_file"), "fs__read_file");
        assert_eq!(exposed(Some("x"), "get.time/now"), "x__get_time_now");
        assert_eq!(exposed(None, ""), "_");
        let long = "a".repeat(100);
        let s = exposed(None, &long);
        assert_eq!(s.len(), MAX_LEN);
        assert_ne!(s, exposed(None, &"a".repeat(101)));
    }

    /// Gives out names with [`unique`], remembering them.
    #[derive(Default)]
    struct Allocator {
        taken: std::collections::HashSet<String>,
    }

    impl Allocator {
        fn assign(&mut self, wanted: String) -> String {
            let name = unique(wanted, |n| self.taken.contains(n));
            self.taken.insert(name.clone());
            name
        }
    }

    #[test]
    fn collisions_are_deterministic() {
        let mut a = Allocator::default();
        assert_eq!(a.assign("x".into()), "x");
        assert_eq!(a.assign("x".into()), "x_2");
        assert_eq!(a.assign("x".into()), "x_3");
        let mut b = Allocator::default();
        let long = "b".repeat(64);
        assert_eq!(b.assign(long.clone()), long);
        let second = b.assign(long.clone());
        assert_eq!(second.len(), 64);
        assert!(second.ends_with("_2"));
    }

    proptest::proptest! {
        #[test]
        fn always_provider_safe(ns in proptest::option::of("[a-z]{1,10}"), name in "\\PC{0,100}") {
            let e = exposed(ns.as_deref(), &name);
            proptest::prop_assert!(is_provider_safe(&e), "{e:?}");
            let mut alloc = Allocator::default();
            alloc.assign(e.clone());
            let again = alloc.assign(e);
            proptest::prop_assert!(is_provider_safe(&again));
        }
    }
}
