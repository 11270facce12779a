//! Pure decisions, no I/O: how upstream names become the names an agent sees.
//! (Per-agent allow/deny and rewriting join this module with the agent-policy work.)
//!
//! - [`schema`]: schema profiles (passthrough, anthropic, openai) that reshape a tool's `inputSchema` for an LLM provider.
//! - [`fast`]: the same rewrites spliced into a tool's bytes, for the shapes most servers list.
//! - [`rewrite`]: per-tool rewrites (description/title/annotations, pinned and hidden parameters) and the arguments forwarded.

pub mod agent;
pub mod fast;
pub mod naming;
pub mod rewrite;
pub mod schema;
