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
//! - [`policy`]     pure decisions: visibility, names, rewrites, schema profiles.
//! - [`approval`]   consent envelopes, the broker that holds calls, grants, audit log, control API.
//! - [`reload`]     config reload on SIGHUP and file change (validated first, applied atomically).
//! - [`pins`]       tool-definition pinning (rug-pull defence), kept in the state directory.
//! - [`upstream`]   connections to MCP servers: stdio children, Streamable HTTP, legacy SSE.
//! - [`session`]    one agent session: routing, merging, id remapping, cancellation.
//! - [`downstream`] the fronts agents connect to: stdio and Streamable HTTP.
//! - [`instance`]   one instance's wiring: pins, broker, control socket, shared upstreams, reload.
//! - [`identity`]   who is calling over HTTP (the credential alone) and failed-auth throttling.
//! - [`tls`]        the front's listener: plain loopback TCP, or TLS/mTLS with reloaded certificates.
//! - [`state`]      the state directory: 0700, atomic 0600 files, never through a symlink.
//! - [`metrics`]    process-wide counters, served as Prometheus text on `/metrics`.
//! - [`import`]     `mcpServers` JSON (Claude Desktop, Cursor, Claude Code, VS Code) → config.
//! - [`cli`]        operator commands that talk to running instances over the control socket.
//! - [`error`]      the one place failures become what an agent is told (codes, fixed texts).
//! - [`term`]       what is printed for an operator is made safe for a terminal.
//! - [`glob`]       name globs (`*`, `?`) compiled once at load, for config and policy.
//! - [`util`]       small helpers (lock, truncate, now_secs) that depend on no module here.

#![forbid(unsafe_code)]

pub mod approval;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod error;
pub mod glob;
pub mod identity;
pub mod import;
pub mod instance;
pub mod jsonrpc;
pub mod mcp;
pub mod metrics;
pub mod oidc;
pub mod oidc_login;
pub mod pins;
pub mod policy;
pub mod reload;
pub mod session;
pub mod sse;
pub mod state;
pub mod task;
pub mod telemetry;
pub mod term;
pub mod tls;
pub mod upstream;
pub mod util;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;

/// Runs the Streamable HTTP front until `shutdown` resolves, then shuts down gracefully.
/// `token`: the single-user token (see [`downstream::http::single_user_token`]).
pub async fn serve_http(
    config: Arc<Config>,
    listener: tls::FrontListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    downstream::http::serve(config, listener, token, shutdown).await
}

/// Runs the stdio front on this process's stdin/stdout.
pub async fn serve_stdio(
    config: Arc<Config>,
    caller: identity::Caller,
    shutdown: impl Future<Output = ()>,
) {
    downstream::stdio::run(config, caller, shutdown).await
}

/// A throwaway session for an operator command: the caller's upstreams started, nothing
/// listening for what they send.
async fn operator_session(
    name: &str,
    config: Arc<Config>,
    caller: identity::Caller,
    services: &instance::Instance,
) -> Arc<session::Session> {
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let init = session::own_initialize(name);
    session::Session::initialize(name.into(), config, caller, None, services, &init, tx)
        .await
        .0
}

/// A caller's tools (exposed name, upstream, original name, bytes as shown) and the upstreams
/// that did not come up (name, why), from a throwaway session whose upstreams are stopped again
/// before this returns.
async fn look(
    name: &str,
    config: Arc<Config>,
    caller: identity::Caller,
) -> (
    Vec<(String, String, String, bytes::Bytes)>,
    Vec<(String, String)>,
) {
    let shared = instance::Instance::operator(&config);
    let s = operator_session(name, config, caller, &shared).await;
    let tools = s.view(session::catalog::ListKind::Tools).await;
    let unavailable = s.unavailable();
    s.close();
    shared.close();
    upstream::wait_for_children(Duration::from_secs(5)).await;
    (tools, unavailable)
}

/// Exit 1 when an upstream did not come up (what could be shown was shown).
fn exit_for(unavailable: &[(String, String)]) -> std::process::ExitCode {
    if unavailable.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

/// `mcp-warden tools`: starts the agent's upstreams in a throwaway session, prints what the
/// agent would see, stops them.
pub async fn print_tools(
    config: Arc<Config>,
    caller: identity::Caller,
    json: bool,
) -> std::process::ExitCode {
    let (tools, unavailable) = look("mcp-warden tools", config, caller).await;
    for (name, reason) in &unavailable {
        eprintln!(
            "mcp-warden: upstream {name} is unavailable: {}",
            term::safe(&reason.to_string())
        );
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
            term::safe_lines(&serde_json::to_string_pretty(&items).unwrap_or_default())
        );
    } else if tools.is_empty() {
        println!("(no tools)");
    } else {
        for (exposed, upstream, original, raw) in &tools {
            let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
            println!(
                "{exposed}    ({upstream}: {})",
                term::safe(&original.to_string())
            );
            if let Some(d) = v.get("description").and_then(|d| d.as_str()) {
                println!("    {}", term::safe(d.lines().next().unwrap_or_default()));
            }
            let schema = v
                .get("inputSchema")
                .map(|x| x.to_string())
                .unwrap_or_default();
            println!("    schema: {}", term::safe(&schema));
        }
    }
    exit_for(&unavailable)
}

/// `mcp-warden check --probe`: starts every enabled upstream once (handshake and tool list)
/// and says which answered; exit 1 if any did not.
pub async fn probe(config: Arc<Config>) -> std::process::ExitCode {
    let caller = identity::Caller::User;
    let (tools, unavailable) = look("mcp-warden check --probe", config.clone(), caller).await;
    for u in config.upstreams.iter().filter(|u| u.enabled) {
        match unavailable.iter().find(|(n, _)| n.as_str() == u.name) {
            Some((_, reason)) => println!(
                "  probe {}: FAILED: {}",
                u.name,
                term::safe(&reason.to_string())
            ),
            None => {
                let n = tools.iter().filter(|t| t.1 == u.name).count();
                println!("  probe {}: ok, {n} tool(s)", u.name);
            }
        }
    }
    exit_for(&unavailable)
}

/// `mcp-warden tools accept`: fetches the upstream's current definition of `tool`, shows how it
/// differs from the pinned one, and pins it (after confirmation unless `yes`).
pub async fn accept_tool(
    config: Arc<Config>,
    upstream: &str,
    tool: &str,
    yes: bool,
) -> std::process::ExitCode {
    use std::io::{BufRead, IsTerminal, Write};
    use std::process::ExitCode;
    let Some(pin_key) = config.upstream(upstream).map(|u| u.pin_key()) else {
        eprintln!("mcp-warden: no upstream named `{upstream}` in the config");
        return ExitCode::from(1);
    };
    let services = instance::Instance::operator(&config);
    let Some(pins) = services.pins.clone() else {
        eprintln!("mcp-warden: no usable state directory");
        return ExitCode::from(1);
    };
    let caller = identity::Caller::User;
    let s = operator_session("mcp-warden tools accept", config, caller, &services).await;
    let current = s.upstream_definition(upstream, tool).await;
    s.close();
    services.close();
    upstream::wait_for_children(Duration::from_secs(5)).await;
    let Some(current) = current else {
        eprintln!(
            "mcp-warden: upstream `{upstream}` does not list a tool `{tool}` (or is unavailable)"
        );
        return ExitCode::from(1);
    };
    let new = pins::pin_of(&current);
    match pins.pinned(&pin_key, tool) {
        Some(old) if old.digest == new.digest => {
            println!("{upstream}/{tool}: the current definition is already the pinned one");
            return ExitCode::SUCCESS;
        }
        Some(old) => {
            println!("{upstream}/{tool} changed since it was pinned (- pinned, + now):");
            print!(
                "{}",
                term::safe_lines(&pins::diff(&old.definition, &new.definition))
            );
        }
        None => println!(
            "{upstream}/{tool} is not pinned yet; its definition:\n{}",
            term::safe_lines(&serde_json::to_string_pretty(&new.definition).unwrap_or_default())
        ),
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("mcp-warden: not accepted: confirm interactively or pass --yes");
            return ExitCode::from(1);
        }
        print!("Accept this definition? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            println!("not accepted");
            return ExitCode::from(1);
        }
    }
    pins.accept(&pin_key, tool, &current);
    println!("accepted: {upstream}/{tool} is pinned to {}", new.digest);
    ExitCode::SUCCESS
}
