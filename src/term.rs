//! What mcp-warden prints for an operator comes partly from agents and upstreams (a held call's
//! summary and arguments, tool names and descriptions, events). Printed raw, their control
//! characters are commands to the operator's terminal: an escape sequence can erase or rewrite
//! what the approver reads. [`safe`] writes every such character as a `\uXXXX` escape.
//!
//! Owns: which characters are unsafe on a terminal. Must not: decide what is printed.

use std::borrow::Cow;

/// Whether `c` can change what a terminal shows beyond drawing itself: C0 controls (newline
/// and tab too: a field must not start a line the operator would take for mcp-warden's own),
/// DEL, C1 controls (8-bit CSI, OSC, …), and the Unicode controls that reorder or hide text
/// (bidirectional overrides and isolates, line and paragraph separators).
fn unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as `\uXXXX`. On JSON text this keeps it valid
/// JSON (such characters can only stand inside its strings, where `\uXXXX` means the same).
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`safe`] for text of several lines (pretty-printed JSON, a diff): each line is escaped, the
/// line breaks between them are kept.
pub fn safe_lines(text: &str) -> String {
    text.split('\n').map(safe).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_drives_a_terminal_and_nothing_else() {
        assert_eq!(safe("Transfer 5 to bob"), "Transfer 5 to bob");
        assert!(matches!(safe("plain"), Cow::Borrowed(_)));
        assert_eq!(safe("a\u{1b}[2Jb"), "a\\u001b[2Jb");
        assert_eq!(safe("x\r\ny\tz"), "x\\u000d\\u000ay\\u0009z");
        assert_eq!(safe("\u{9b}31m\u{7f}"), "\\u009b31m\\u007f");
        assert_eq!(safe("pay \u{202e}1000"), "pay \\u202e1000");
        assert_eq!(safe("é ü 日本 🙂"), "é ü 日本 🙂");
        let json = serde_json::json!({"s": "a\u{1b}]0;t\u{7}\u{9d}\u{2066}"}).to_string();
        let v: serde_json::Value = serde_json::from_str(&safe(&json)).unwrap();
        assert_eq!(
            v["s"], "a\u{1b}]0;t\u{7}\u{9d}\u{2066}",
            "still the same JSON"
        );
        assert_eq!(
            safe_lines("{\n  \"a\": \"\u{1b}c\"\n}"),
            "{\n  \"a\": \"\\u001bc\"\n}"
        );
    }

    proptest! {
        #[test]
        fn nothing_unsafe_survives(s in any::<String>()) {
            let out = safe(&s);
            prop_assert!(!out.chars().any(unsafe_char));
        }
    }
}
