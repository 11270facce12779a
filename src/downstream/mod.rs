//! The fronts agents connect to: stdio (one agent, the one that launched us) and Streamable
//! HTTP (many agents, sessions by `Mcp-Session-Id`).
//!
//! Must not: route or rewrite messages (that is `crate::session`); a front only frames
//! messages, enforces its transport's rules, and owns the sessions' lifetimes.

// Untrusted bytes pass through here: an index that could be out of range would be a panic an
// agent or a server can trigger. Use `get`, or say why the index is in range.
#![warn(clippy::indexing_slicing)]

pub mod http;
pub mod modern;
pub mod stdio;

/// A fresh session id: 128 bits from the OS CSPRNG, hex-encoded (visible ASCII as the spec
/// requires). `None` when the OS has no randomness to give: no secure ids, so no session
/// (the caller refuses the request rather than issue a guessable id).
pub fn new_session_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}
