//! mcp-warden: a standalone sidecar proxy for the Model Context Protocol.
//!
//! Agents connect to mcp-warden (stdio or Streamable HTTP) instead of their MCP servers; it
//! connects to the real servers and forwards everything it does not need to change byte for
//! byte.
//!
//! Module map (each module's own `//!` says what it owns and what it must not do):
//!
//! - [`config`]     TOML → validated, frozen [`config::Config`]; every error with its key path.
//! - [`jsonrpc`]    raw messages plus a small envelope; byte-level edits; NDJSON framing.
//! - [`sse`]        Server-Sent Events parser and encoder.
//! - [`mcp`]        protocol versions, headers, borrowed views of intercepted messages.
//! - [`policy`]     pure naming decisions (exposed names, collisions).
//! - [`upstream`]   connections to MCP servers: stdio children, Streamable HTTP, legacy SSE.
//! - [`session`]    one agent session: routing, merging, id remapping, cancellation.
//! - [`downstream`] the fronts agents connect to: stdio and Streamable HTTP; identity.
//! - [`state`]      the state directory: 0700, atomic 0600 files, never through a symlink.

#![forbid(unsafe_code)]

pub mod config;
pub mod downstream;
pub mod jsonrpc;
pub mod mcp;
pub mod policy;
pub mod session;
pub mod sse;
pub mod state;
pub mod task;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;

/// Runs the Streamable HTTP front until `shutdown` resolves, then shuts down gracefully.
/// `token`: the single-user token (see [`downstream::http::single_user_token`]).
pub async fn serve_http(
    config: Arc<Config>,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    downstream::http::serve(config, listener, token, shutdown).await
}

/// Runs the stdio front on this process's stdin/stdout.
pub async fn serve_stdio(
    config: Arc<Config>,
    caller: downstream::identity::Caller,
    shutdown: impl Future<Output = ()>,
) {
    downstream::stdio::run(config, caller, shutdown).await
}

/// `mcp-warden tools`: starts the agent's upstreams in a throwaway session, prints what the
/// agent would see, stops them.
pub async fn print_tools(
    config: Arc<Config>,
    caller: downstream::identity::Caller,
    json: bool,
) -> std::process::ExitCode {
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let init = jsonrpc::request(
        "0",
        "initialize",
        serde_json::json!({
            "protocolVersion": mcp::LATEST_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcp-warden tools", "version": env!("CARGO_PKG_VERSION")}
        }),
    );
    let shared = session::shared::Registry::new(&config);
    let (s, _) =
        session::Session::initialize("tools".into(), config, caller, &shared, &init, tx).await;
    let tools = s.view(session::catalog::ListKind::Tools).await;
    for (name, reason) in s.unavailable() {
        eprintln!("mcp-warden: upstream {name} is unavailable: {reason}");
    }
    if json {
        let items: Vec<serde_json::Value> = tools
            .iter()
            .map(|(exposed, upstream, original, raw)| {
                serde_json::json!({
                    "name": exposed,
                    "upstream": upstream,
                    "original": original,
                    "tool": serde_json::from_slice::<serde_json::Value>(raw).unwrap_or_default(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&items).unwrap_or_default()
        );
    } else if tools.is_empty() {
        println!("(no tools)");
    } else {
        for (exposed, upstream, original, raw) in &tools {
            let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
            println!("{exposed}    ({upstream}: {original})");
            if let Some(d) = v.get("description").and_then(|d| d.as_str()) {
                println!("    {}", d.lines().next().unwrap_or_default());
            }
            let schema = v
                .get("inputSchema")
                .map(|x| x.to_string())
                .unwrap_or_default();
            println!("    schema: {schema}");
        }
    }
    s.close();
    shared.close();
    wait_for_children(Duration::from_secs(5)).await;
    std::process::ExitCode::SUCCESS
}

/// Waits until every stdio upstream child has exited, or `deadline` passes.
pub async fn wait_for_children(deadline: Duration) {
    let end = tokio::time::Instant::now() + deadline;
    while upstream::live_children() > 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
