//! Pure decisions, no I/O: who may see and call what, and how an upstream's tools look to an
//! agent.
//!
//! - [`approval`]: operator rules that hold a call for a human before it is forwarded.
//! - [`agent`]: per-agent visibility (allow/deny globs over servers, tools, prompts, resources).
//! - [`naming`]: provider-safe exposed names, namespaces, deterministic collision handling.
//! - [`schema`]: schema profiles (passthrough, anthropic, openai) that reshape a tool's `inputSchema` for an LLM provider.
//! - [`rewrite`]: per-tool rewrites (description/title/annotations, pinned and hidden parameters) and the arguments forwarded.

pub mod agent;
pub mod approval;
pub mod naming;
pub mod rewrite;
pub mod schema;
