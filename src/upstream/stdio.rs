//! A stdio upstream: a supervised child process speaking newline-delimited JSON-RPC.
//!
//! The child runs in its own process group with a cleared environment (plus a documented
//! minimum, `inherit_env` and `env`), no shell. Its stderr goes to our log tagged with the
//! upstream's name. Shutdown follows the MCP spec: close stdin, wait, SIGTERM, wait, SIGKILL —
//! to the whole group, so that `npx`/`uvx` wrappers do not leave grandchildren behind.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{Inbound, Inlet, Pipe};
use crate::config::StdioSpec;
use crate::jsonrpc::{self, LineError, LineReader, Message, Payload};

/// Variables kept from mcp-warden's environment for every stdio child: what a program needs to
/// find its interpreter and write its caches, nothing that carries credentials.
pub(crate) const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TERM",
    "SYSTEMROOT",
];

const GRACE: Duration = Duration::from_secs(2);

/// Kills the child's process group if the supervisor is dropped before it finished (e.g. the
/// runtime is shutting down), so no child outlives the proxy.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        super::LIVE_CHILDREN.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// The program and arguments to run: the command itself, or — with resource limits — util-linux
/// `prlimit` setting them and then executing the command (no shell either way; no unsafe
/// `pre_exec` needed in this process).
fn program(spec: &StdioSpec) -> (String, Vec<String>) {
    let Some(l) = &spec.limits else {
        return (spec.command.clone(), spec.args.clone());
    };
    let mut args = vec![];
    if let Some(m) = l.memory_mb {
        args.push(format!("--as={}", m * 1024 * 1024));
    }
    if let Some(c) = l.cpu_secs {
        args.push(format!("--cpu={c}"));
    }
    if let Some(n) = l.open_files {
        args.push(format!("--nofile={n}"));
    }
    if let Some(p) = l.processes {
        args.push(format!("--nproc={p}"));
    }
    args.push("--".into());
    args.push(spec.command.clone());
    args.extend(spec.args.iter().cloned());
    ("prlimit".into(), args)
}

pub(super) fn spawn(
    name: &str,
    spec: &StdioSpec,
    max_line: usize,
    inlet: Inlet,
) -> std::io::Result<Pipe> {
    let (program, args) = program(spec);
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for key in BASE_ENV
        .iter()
        .copied()
        .chain(spec.inherit_env.iter().map(String::as_str))
    {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in &spec.env {
        cmd.env(k, v.expose());
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    tracing::info!(pid = ?pid, command = %spec.command, "started stdio upstream");

    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("child pipes missing"));
    };
    let (out_tx, out_rx) = mpsc::channel::<Message>(256);

    let span = tracing::Span::current();
    crate::task::detach(span.clone(), supervise(child, pid, stdin, out_rx));
    crate::task::detach(span.clone(), read_stdout(stdout, inlet, max_line));
    let upstream = name.to_string();
    crate::task::detach(span, async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "mcp_warden::upstream::stderr", upstream = %upstream, "{}", crate::util::truncate(&line, 2000));
        }
    });
    Ok(Pipe {
        tx: out_tx,
        direct: None,
    })
}

async fn supervise(
    mut child: Child,
    pgid: Option<Pid>,
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<Message>,
) {
    super::LIVE_CHILDREN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut guard = GroupGuard { pgid };
    let mut buf = Vec::with_capacity(4096);
    let exited = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => {
                    // Write every queued message before one flush: fewer syscalls under load.
                    buf.clear();
                    buf.extend_from_slice(msg.bytes());
                    buf.push(b'\n');
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(more.bytes());
                        buf.push(b'\n');
                        if buf.len() > 1 << 20 { break; }
                    }
                    if let Err(e) = stdin.write_all(&buf).await {
                        tracing::warn!(error = %e, "cannot write to upstream stdin");
                        break None;
                    }
                    if stdin.flush().await.is_err() { break None; }
                }
                None => break None,
            },
            status = child.wait() => break Some(status),
        }
    };
    drop(stdin);
    drop(rx);
    let status = match exited {
        Some(s) => s.ok(),
        None => {
            // Orderly shutdown: stdin is closed; give the child time to exit on its own.
            match tokio::time::timeout(GRACE, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    if let Some(p) = pgid {
                        let _ = killpg(p, Signal::SIGTERM);
                    }
                    match tokio::time::timeout(GRACE, child.wait()).await {
                        Ok(s) => s.ok(),
                        Err(_) => {
                            if let Some(p) = pgid {
                                let _ = killpg(p, Signal::SIGKILL);
                            }
                            child.wait().await.ok()
                        }
                    }
                }
            }
        }
    };
    // The leader is gone; make sure nothing else in its group survives it.
    if let Some(p) = guard.pgid.take() {
        let _ = killpg(p, Signal::SIGKILL);
    }
    tracing::info!(status = ?status, "stdio upstream exited");
}

async fn read_stdout(stdout: tokio::process::ChildStdout, inlet: Inlet, max_line: usize) {
    let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, stdout), max_line);
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(LineError::TooLong { max, id, request }) => {
                tracing::warn!(max, "upstream wrote a line over the limit; dropped");
                let why = format!("larger than the limit ({max} bytes)");
                if let Some(err) = super::unreadable_answer(id.as_deref(), request, &why) {
                    if !inlet.deliver(Inbound {
                        msg: err,
                        related: None,
                    }) {
                        return;
                    }
                }
                continue;
            }
            Err(LineError::Io(e)) => {
                tracing::warn!(error = %e, "reading upstream stdout failed");
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        for msg in parse_line(line) {
            if !inlet.deliver(Inbound { msg, related: None }) {
                return;
            }
        }
    }
}

/// A line from an upstream: a message, a batch, or garbage (logged and skipped — servers that
/// print banners to stdout are common, and must not take the session down).
fn parse_line(line: Bytes) -> Vec<Message> {
    match jsonrpc::parse_payload(line.clone()) {
        Ok(Payload::Single(m)) => vec![m],
        Ok(Payload::Batch(items)) => items.into_iter().filter_map(Result::ok).collect(),
        Err(e @ jsonrpc::ParseError::TooDeep { .. }) => {
            let jsonrpc::ParseError::TooDeep { id, request } = &e else {
                return vec![];
            };
            let why = e.to_string();
            super::unreadable_answer(id.as_deref(), *request, &why)
                .into_iter()
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, line = %crate::util::truncate(&String::from_utf8_lossy(&line), 200), "upstream wrote a non-JSON-RPC line to stdout; ignored");
            vec![]
        }
    }
}
