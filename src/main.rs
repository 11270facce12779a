//! The `mcp-warden` command line: parse arguments, set up logging, load the config, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mcp_warden::config::{self, Config, Transport};

#[derive(Parser)]
#[command(name = "mcp-warden", version, about = "A sidecar proxy for the Model Context Protocol", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `mcp_warden=debug`.
    #[arg(long, global = true, env = "MCP_WARDEN_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(long, global = true, env = "MCP_WARDEN_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
}

#[derive(Subcommand)]
enum ToolsAction {
    /// Accept an upstream tool's current definition after it changed (shows the difference
    /// first; asks for confirmation unless --yes). Running instances pick it up.
    Accept {
        /// The upstream's name in the config.
        upstream: String,
        /// The tool's name at the upstream.
        tool: String,
        /// Accept without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ApprovalsAction {
    /// Pending approvals of every running instance sharing the state directory.
    List,
    /// Print approval events as they happen (one JSON object per line).
    Watch,
}

#[derive(Subcommand)]
enum GrantsAction {
    /// Standing grants (allow-always decisions).
    List,
    /// Revoke a grant: it stops applying at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the audit log's hash chain; name the first broken link.
    Verify,
    /// Print the audit log, one JSON object per line.
    List,
}

#[derive(Subcommand)]
enum AuthAction {
    /// Sign mcp-warden in to an OAuth-protected upstream (authorization code with PKCE): prints
    /// the URL to open in a browser and waits for the redirect on a loopback port.
    Login {
        upstream: String,
        /// The agent this sign-in is for (upstreams with `per = "agent"`).
        #[arg(long)]
        agent: Option<String>,
    },
    /// The OAuth upstreams and whether mcp-warden is signed in to each (never a token).
    List,
    /// Sign out of an upstream: revokes the refresh token where the server offers it, and
    /// forgets the sign-in. An upstream whose people sign in for themselves (`per = "user"`):
    /// every person, or the one `--person` names.
    Logout {
        upstream: String,
        #[arg(long)]
        agent: Option<String>,
        /// The person whose own sign-in goes: their `sub` at the `[auth.oidc]` issuer.
        #[arg(long)]
        person: Option<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Turn an `mcpServers` JSON file (Claude Desktop, Cursor, Claude Code) into an mcp-warden
    /// config (printed, or written with --output), and show the client config that points the
    /// client at mcp-warden.
    Import {
        /// claude_desktop_config.json, .cursor/mcp.json, .mcp.json, …
        file: PathBuf,
        /// Write the config here (refuses to overwrite) instead of printing it.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// The running instances using this state directory: uptime, upstream traffic and starts,
    /// pending approvals.
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object per instance, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Pending approvals (held calls waiting for a human).
    Approvals {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: ApprovalsAction,
    },
    /// Decide a held call: allow-once, allow-always or deny. ID may be left out when exactly one
    /// approval is pending.
    Approve {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The approval id (from `approvals list`), or the decision when only one is pending.
        first: String,
        /// The decision, when an id is given.
        second: Option<String>,
    },
    /// Standing grants created by allow-always.
    Grants {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: GrantsAction,
    },
    /// The audit log.
    Audit {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Serve MCP over Streamable HTTP (default 127.0.0.1:8787, path /mcp).
    Serve {
        /// Config file (default: ./mcp-warden.toml, ~/.config/mcp-warden/mcp-warden.toml, a
        /// checkout's proxy-config/quickstart.toml, else the binary's own quickstart).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address, overriding `[proxy] listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Allow a non-loopback listener without TLS (traffic and bearer tokens in clear text).
        #[arg(long)]
        dangerously_allow_insecure_remote: bool,
    },
    /// Serve one agent over stdin/stdout (logs go to stderr).
    Stdio {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The agent this instance serves (default: the config's only agent; none configured:
        /// the local user sees every upstream).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Show what an agent will see: exposed name, upstream and original name, description, final
    /// schema. Starts the agent's upstreams to ask them, then stops them.
    Tools {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The agent (default: the config's only agent; none configured: the local user).
        #[arg(long)]
        agent: Option<String>,
        /// Print JSON (one object per tool, as the agent receives it, plus its origin).
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<ToolsAction>,
    },
    /// Sign-ins to OAuth-protected upstreams.
    Auth {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Validate a config: print every error with its key path (exit 1), or a summary.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also start every enabled upstream once and report which answered (exit 1 if any
        /// did not).
        #[arg(long)]
        probe: bool,
    },
}

/// The state directory named by the config (operator commands need nothing else from it).
fn state_dir(path: Option<PathBuf>) -> PathBuf {
    Config::state_dir_for(path)
}

fn load(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    let path = path.or_else(config::default_config_path);
    let shown = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the built-in default config".into());
    Config::load_from(path.as_deref()).map_err(|errs| {
        eprintln!("mcp-warden: {shown} has {} error(s):", errs.0.len());
        for e in &errs.0 {
            eprintln!("  {e}");
        }
        ExitCode::from(1)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal received");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    mcp_warden::metrics::mark_start();
    // Dropped last (after the runtime): flushes exported traces.
    let _telemetry = mcp_warden::telemetry::init(&cli.log, &cli.log_format);
    // One agent over stdio, and `serve` by default: a single-threaded runtime (every hop of a
    // call stays on one thread, so no cross-thread wake-ups: in the benchmark, 10-25% less CPU
    // per call and, with an HTTP upstream, 50 us less added latency). `[proxy] worker_threads`
    // gives `serve` more threads for many busy agents.
    let workers = match &cli.command {
        Command::Serve { config, .. } => {
            // Errors are reported by the real load below.
            Config::load_or_default(config.clone()).map_or(1, |c| c.proxy.worker_threads)
        }
        _ => 0,
    };
    let mut builder = match cli.command {
        Command::Stdio { .. } => tokio::runtime::Builder::new_current_thread(),
        Command::Serve { .. } if workers == 1 => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if workers > 1 {
                b.worker_threads(workers);
            }
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-warden: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Tools {
                config,
                agent,
                json,
                action,
            } => {
                let cfg = match load(config) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                if let Some(ToolsAction::Accept { upstream, tool, yes }) = action {
                    return mcp_warden::accept_tool(Arc::new(cfg), &upstream, &tool, yes).await;
                }
                let caller = match mcp_warden::downstream::stdio::caller_for(&cfg, agent.as_deref())
                {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("mcp-warden: {e}");
                        return ExitCode::from(1);
                    }
                };
                mcp_warden::print_tools(Arc::new(cfg), caller, json).await
            }
            Command::Import { file, output } => {
                let text = match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("mcp-warden: cannot read {}: {e}", file.display());
                        return ExitCode::from(1);
                    }
                };
                let imported = match mcp_warden::import::import(&text, &file.display().to_string()) {
                    Ok(i) => i,
                    Err(e) => {
                        eprintln!("mcp-warden: {}: {e}", file.display());
                        return ExitCode::from(1);
                    }
                };
                match &output {
                    Some(path) => {
                        use std::io::Write;
                        let f = std::fs::OpenOptions::new().write(true).create_new(true).open(path);
                        match f.and_then(|mut f| f.write_all(imported.toml.as_bytes())) {
                            Ok(()) => eprintln!("mcp-warden: wrote {}", path.display()),
                            Err(e) => {
                                eprintln!("mcp-warden: cannot write {}: {e}", path.display());
                                return ExitCode::from(1);
                            }
                        }
                    }
                    None => print!("{}", imported.toml),
                }
                if !imported.secrets.is_empty() {
                    eprintln!("\nmcp-warden: secrets were not copied into the config; set these variables where mcp-warden runs:");
                    for (var, _) in &imported.secrets {
                        eprintln!("  export {var}=…");
                    }
                }
                for (how, snippet) in &imported.client {
                    eprintln!("\n{how}\n{snippet}");
                }
                eprintln!(
                    "with MCP_WARDEN_TOKEN set where the client runs to the token `mcp-warden serve` prints \
                     (also in {}/http-token; add `keep_token = true` under [proxy] to keep it across restarts):\n  \
                     export MCP_WARDEN_TOKEN=$(cat {}/http-token)",
                    Config::state_dir_for(None).display(),
                    Config::state_dir_for(None).display()
                );
                ExitCode::SUCCESS
            }
            Command::Approvals { config, action } => {
                let dir = state_dir(config);
                match action {
                    ApprovalsAction::List => mcp_warden::cli::approvals_list(&dir).await,
                    ApprovalsAction::Watch => mcp_warden::cli::approvals_watch(&dir).await,
                }
            }
            Command::Approve { config, first, second } => {
                let (id, decision) = match second {
                    Some(d) => (Some(first), d),
                    None => (None, first),
                };
                mcp_warden::cli::approve(&state_dir(config), id.as_deref(), &decision).await
            }
            Command::Status { config, json } => {
                mcp_warden::cli::status(&state_dir(config), json).await
            }
            Command::Grants { config, action } => {
                let dir = state_dir(config);
                match action {
                    GrantsAction::List => mcp_warden::cli::grants_list(&dir).await,
                    GrantsAction::Revoke { id } => mcp_warden::cli::grants_revoke(&dir, &id).await,
                }
            }
            Command::Audit { config, action } => {
                // A fleet's log is in its database; otherwise in the state directory.
                let fleet = match Config::load_from(config.clone().or_else(config::default_config_path).as_deref()) {
                    Ok(c) => c.store.clone(),
                    Err(errs) if errs.0.iter().any(|e| e.path.starts_with("store")) => {
                        eprintln!("mcp-warden: the config's [store] has errors:");
                        for e in &errs.0 {
                            eprintln!("  {e}");
                        }
                        return ExitCode::from(1);
                    }
                    Err(_) => None,
                };
                let dir = state_dir(config);
                let (rows, verified, place) = match &fleet {
                    Some(s) => match mcp_warden::approval::postgres::audit_rows(s).await {
                        Ok((rows, head)) => {
                            let key = mcp_warden::approval::postgres::audit_key(s);
                            let v = mcp_warden::approval::audit::verify(&rows, Some(&key), head.as_ref());
                            (rows, v, s.display.clone())
                        }
                        Err(e) => {
                            eprintln!("mcp-warden: cannot read the audit log in {}: {e}", s.display);
                            return ExitCode::from(1);
                        }
                    },
                    None => match mcp_warden::approval::store::audit_rows(&dir) {
                        Ok(rows) => (rows, mcp_warden::approval::store::verify_dir(&dir), dir.display().to_string()),
                        Err(e) => {
                            eprintln!("mcp-warden: cannot read the audit log in {}: {e}", dir.display());
                            return ExitCode::from(1);
                        }
                    },
                };
                match action {
                    AuditAction::List => {
                        for r in &rows {
                            let event: serde_json::Value = serde_json::from_str(&r.event).unwrap_or_default();
                            let line = serde_json::json!({"seq": r.seq, "time": r.time, "event": event}).to_string();
                            println!("{}", mcp_warden::term::safe(&line));
                        }
                        ExitCode::SUCCESS
                    }
                    AuditAction::Verify => match verified {
                        Ok(v) => {
                            let legacy = if v.legacy > 0 {
                                format!(", the first {} from before the chain was keyed", v.legacy)
                            } else {
                                String::new()
                            };
                            println!("audit log OK: {} entries{legacy}, chain intact ({place})", v.entries);
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            println!("audit log BROKEN: {} ({place})", mcp_warden::term::safe(&e));
                            ExitCode::from(1)
                        }
                    },
                }
            }
            Command::Auth { config, action } => {
                let cfg = match load(config) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                use mcp_warden::upstream::oauth_login;
                match action {
                    AuthAction::Login { upstream, agent } => {
                        let show = |url: &str| {
                            eprintln!("mcp-warden: to sign in to `{upstream}`, open this URL in a browser (waiting {} s):", oauth_login::WAIT.as_secs());
                            println!("{url}");
                        };
                        match oauth_login::login(&cfg, &upstream, agent.as_deref(), &show).await {
                            Ok(g) => {
                                eprintln!(
                                    "mcp-warden: signed in to `{upstream}` at {} (scope: {})",
                                    g.issuer,
                                    g.scope.as_deref().unwrap_or("-")
                                );
                                ExitCode::SUCCESS
                            }
                            Err(e) => {
                                eprintln!("mcp-warden: {e}");
                                ExitCode::from(1)
                            }
                        }
                    }
                    AuthAction::List => {
                        for l in oauth_login::list(&cfg) {
                            println!("{}", l.line);
                        }
                        ExitCode::SUCCESS
                    }
                    AuthAction::Logout { upstream, agent, person } => match oauth_login::logout(&cfg, &upstream, agent.as_deref(), person.as_deref()).await {
                        Ok(0) => {
                            eprintln!("mcp-warden: not signed in to `{upstream}`");
                            ExitCode::SUCCESS
                        }
                        Ok(1) => {
                            eprintln!("mcp-warden: signed out of `{upstream}`");
                            ExitCode::SUCCESS
                        }
                        Ok(n) => {
                            eprintln!("mcp-warden: signed out of `{upstream}` ({n} sign-ins)");
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("mcp-warden: {e}");
                            ExitCode::from(1)
                        }
                    },
                }
            }
            Command::Check { config, probe } => {
                let cfg = match load(config) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                println!(
                    "config OK: {}",
                    cfg.source
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "the built-in default".into())
                );
                println!("  listen: http://{}{}", cfg.proxy.listen, cfg.proxy.path);
                for u in &cfg.upstreams {
                    let what = match &u.transport {
                        Transport::Stdio(s) => format!("stdio: {} {}", s.command, s.args.join(" ")),
                        Transport::Http(h) => format!("{:?} HTTP: {}", h.flavor, h.url),
                    };
                    let ns = u
                        .namespace
                        .as_deref()
                        .map(|n| format!(" (tools exposed as {n}__<tool>)"))
                        .unwrap_or_default();
                    let off = if u.enabled { "" } else { " [disabled]" };
                    println!("  upstream {}: {what}{ns}{off}", u.name);
                }
                // OAuth upstreams: signed in or not (never a token).
                for l in mcp_warden::upstream::oauth_login::list(&cfg) {
                    println!("  oauth {}", l.line);
                }
                if let Some(o) = &cfg.oidc {
                    println!(
                        "  auth.oidc: tokens of {} for {} identify agents by `match`",
                        o.issuer, o.resource
                    );
                }
                if let Some(s) = &cfg.store {
                    println!("  store: PostgreSQL {} (a fleet: approvals, grants, audit log and tool pins shared)", s.display);
                }
                if cfg.agents.is_empty() {
                    println!("  agents: none named (single user: every upstream; HTTP needs the token generated at start)");
                }
                for a in &cfg.agents {
                    let servers = a.servers.as_ref().map(|s| s.join(", ")).unwrap_or_else(|| "all".into());
                    let allow = if a.tools.allow.is_empty() { "nothing (no allow rule)".into() } else { a.tools.allow.join(", ") };
                    println!("  agent {}: servers {servers}; tools allow {allow}{}", a.name,
                        if a.tools.deny.is_empty() { String::new() } else { format!("; deny {}", a.tools.deny.join(", ")) });
                }
                if probe {
                    let store_ok = match &cfg.store {
                        None => true,
                        Some(s) => match mcp_warden::approval::postgres::probe(s).await {
                            Ok(state) => {
                                println!("  probe store: ok, {state}");
                                true
                            }
                            Err(e) => {
                                println!("  probe store: FAILED: {}", mcp_warden::term::safe(&e));
                                false
                            }
                        },
                    };
                    let code = mcp_warden::probe(Arc::new(cfg)).await;
                    return if store_ok { code } else { ExitCode::from(1) };
                }
                ExitCode::SUCCESS
            }
            Command::Serve {
                config,
                listen,
                dangerously_allow_insecure_remote,
            } => {
                let mut cfg = match load(config) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                if let Some(addr) = listen {
                    cfg.proxy.listen = addr;
                }
                if !cfg.proxy.listen.ip().is_loopback() {
                    if cfg.agents.is_empty() && cfg.proxy.auth == config::AuthMode::None {
                        eprintln!("mcp-warden: a non-loopback listener needs authentication (auth = \"none\" is loopback-only)");
                        return ExitCode::from(1);
                    }
                    // Beyond loopback, traffic and tokens need TLS.
                    if cfg.proxy.tls.is_none() {
                        if !dangerously_allow_insecure_remote {
                            eprintln!(
                                "mcp-warden: refusing to listen on {} (not loopback) without TLS; configure [proxy.tls], use a loopback address, or pass --dangerously-allow-insecure-remote to accept clear-text traffic and tokens",
                                cfg.proxy.listen
                            );
                            return ExitCode::from(1);
                        }
                        tracing::warn!(listen = %cfg.proxy.listen, "INSECURE: listening beyond loopback without TLS (--dangerously-allow-insecure-remote)");
                        cfg.proxy.insecure_remote = true;
                        eprintln!("mcp-warden: WARNING: listening on {} without TLS: traffic and bearer tokens are readable on the network", cfg.proxy.listen);
                    }
                }
                let tcp = match tokio::net::TcpListener::bind(cfg.proxy.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("mcp-warden: cannot listen on {}: {e}", cfg.proxy.listen);
                        return ExitCode::from(1);
                    }
                };
                let listener = match mcp_warden::tls::FrontListener::new(tcp, cfg.proxy.tls.as_ref()) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("mcp-warden: TLS: {e}");
                        return ExitCode::from(1);
                    }
                };
                let token = match mcp_warden::downstream::http::single_user_token(&cfg) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("mcp-warden: cannot create the access token: {e}");
                        return ExitCode::from(1);
                    }
                };
                if let Ok(addr) = listener.local_addr() {
                    // One line on stdout so scripts (and tests) can learn an ephemeral port.
                    let scheme = if cfg.proxy.tls.is_some() { "https" } else { "http" };
                    println!("mcp-warden listening on {scheme}://{addr}{}", cfg.proxy.path);
                }
                match mcp_warden::serve_http(Arc::new(cfg), listener, token, shutdown_signal())
                    .await
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("mcp-warden: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Command::Stdio { config, agent } => {
                let cfg = match load(config) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                let caller = match mcp_warden::downstream::stdio::caller_for(&cfg, agent.as_deref())
                {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("mcp-warden: {e}");
                        return ExitCode::from(1);
                    }
                };
                mcp_warden::serve_stdio(Arc::new(cfg), caller, shutdown_signal()).await;
                ExitCode::SUCCESS
            }
        }
    })
}
