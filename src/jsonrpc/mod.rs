//! JSON-RPC 2.0 as mcp-warden forwards it: raw bytes plus a small envelope.
//!
//! Owns: parsing a message into [`Message`] (its bytes untouched, plus the byte spans of `id`,
//! `params`, `result`, `error` and the method name), byte-level edits ([`splice`]), building the
//! few messages mcp-warden writes itself (errors, its own requests), and the NDJSON codec.
//!
//! Must not: re-serialise a message it did not change, interpret MCP semantics (that is
//! `crate::mcp` and `crate::session`), or do I/O.

// Untrusted bytes pass through here: an index that could be out of range would be a panic an
// agent or a server can trigger. Use `get`, or say why the index is in range.
#![warn(clippy::indexing_slicing)]

mod codec;
mod message;
pub mod skim;

pub use codec::{LineError, LineReader};
pub use message::{
    batch_array, error_response, error_with_data, moved, notification, parse_payload, request,
    response, splice, Edit, Kind, Message, ParseError, Payload, Span,
};

/// Standard JSON-RPC and MCP error codes used by mcp-warden.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP: resource not found.
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// Implementation-defined server error range: the upstream is unavailable.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32001;
    /// The request timed out waiting for the upstream.
    pub const REQUEST_TIMEOUT: i64 = -32000;
    /// The session has too many requests in flight (implementation-defined server error; not
    /// a timeout: nothing was sent anywhere).
    pub const BUSY: i64 = -32005;
}
