//! Child processes (with a guard that always stops them) and what `/proc` says about them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a child may take to announce its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A child process that is stopped when dropped: on success, error and panic paths alike.
///
/// Dropping sends SIGTERM (a graceful shutdown, so mcp-warden stops its own upstreams), waits up
/// to 2 s, then SIGKILLs it; any of its descendants still alive afterwards (same pid, same name)
/// are SIGKILLed too.
pub struct Proc {
    name: String,
    pid: u32,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `program args…` with piped stdin/stdout and stderr going to `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        log_dir: &Path,
    ) -> Result<Proc, String> {
        let log = log_dir.join(format!("{name}.log"));
        let stderr =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{name}: exited before its pid could be read"))?;
        Ok(Proc {
            name: name.to_owned(),
            pid,
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn take_stdio(&mut self) -> Result<(ChildStdin, ChildStdout), String> {
        match (self.child.stdin.take(), self.child.stdout.take()) {
            (Some(i), Some(o)) => Ok((i, o)),
            _ => Err(format!("{}: stdio already taken", self.name)),
        }
    }

    /// Reads the first stdout line, which must start with `prefix` followed by the URL; the rest
    /// of stdout is drained in the background so the child never blocks on a full pipe.
    pub async fn announced_url(&mut self, prefix: &str) -> Result<String, String> {
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| format!("{}: stdout already taken", self.name))?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(STARTUP_TIMEOUT, reader.read_line(&mut line)).await;
        match read {
            Err(_) => {
                return Err(format!(
                    "{}: no address announced within {STARTUP_TIMEOUT:?} (log: {})",
                    self.name,
                    self.log.display()
                ))
            }
            Ok(Err(e)) => return Err(format!("{}: reading stdout: {e}", self.name)),
            Ok(Ok(0)) => {
                return Err(format!(
                    "{}: exited before announcing an address: {}",
                    self.name,
                    self.log_tail()
                ))
            }
            Ok(Ok(_)) => {}
        }
        tokio::spawn(async move {
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let line = line.trim_end();
        line.strip_prefix(prefix)
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: unexpected first stdout line {line:?}", self.name))
    }

    /// The last lines of the child's stderr log (bearer tokens redacted), for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(redact).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        format!("[{}] {tail}", self.log.display())
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_exit(&mut self, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if !self.running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        !self.running()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let descendants = descendants(self.pid);
        if self.running() {
            signal(self.pid, "TERM");
            if !self.wait_exit(Duration::from_secs(2)) {
                eprintln!(
                    "bench: {} (pid {}) ignored SIGTERM; killing it",
                    self.name, self.pid
                );
                let _ = self.child.start_kill();
                self.wait_exit(Duration::from_secs(2));
            }
        }
        // Give the descendants a moment to notice their parent is gone (stdin EOF).
        let deadline = Instant::now() + Duration::from_secs(1);
        for (pid, comm) in descendants {
            while Instant::now() < deadline && proc_comm(pid).as_deref() == Some(comm.as_str()) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if proc_comm(pid).as_deref() == Some(comm.as_str()) {
                eprintln!(
                    "bench: {comm} (pid {pid}, child of {}) outlived it; killing it",
                    self.name
                );
                signal(pid, "KILL");
            }
        }
    }
}

/// `Bearer <token>` → `Bearer <redacted>`.
fn redact(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("Bearer ") {
        let (head, tail) = rest.split_at(i + "Bearer ".len());
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '`' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str("<redacted>");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Sends a signal with the `kill` utility (keeps the bench free of `unsafe` and extra crates).
fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The fields of `/proc/<pid>/stat` after the command name; index `k - 3` is field `k` of proc(5).
fn stat_fields(pid: u32) -> Option<(String, Vec<String>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest = stat.get(close + 1..)?;
    Some((comm, rest.split_whitespace().map(str::to_owned).collect()))
}

fn proc_comm(pid: u32) -> Option<String> {
    stat_fields(pid).map(|(comm, _)| comm)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let (_, f) = stat_fields(pid)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.get(name.len()..)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Direct children of `pid`, as (pid, comm).
pub fn children(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let (comm, f) = stat_fields(p)?;
            (f.get(1)?.parse::<u32>().ok()? == pid).then_some((p, comm))
        })
        .collect()
}

/// All descendants of `pid` (children first), as (pid, comm).
fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        if out.len() > 256 {
            break;
        }
        for (c, comm) in children(p) {
            queue.push(c);
            out.push((c, comm));
        }
    }
    out
}

/// Clock ticks per second for `/proc/<pid>/stat` times: `getconf CLK_TCK`, else an assumed 100.
pub fn clock_ticks() -> (u64, &'static str) {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .map_or((100, "assumed (getconf CLK_TCK failed)"), |t| {
            (t, "getconf CLK_TCK")
        })
}

/// Samples a process's `VmRSS` in the background, keeping the maximum, until stopped.
pub struct RssSampler {
    max_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let max_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (Arc::clone(&max_kib), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            // Bounded: stops when told, or when the process is gone, or after an hour.
            let deadline = Instant::now() + Duration::from_secs(3600);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match memory_kib(pid) {
                    Some((rss, _)) => {
                        m.fetch_max(rss, Ordering::Relaxed);
                    }
                    None => return,
                }
                tokio::time::sleep(every).await;
            }
        });
        RssSampler {
            max_kib,
            stop,
            task,
        }
    }

    /// Stops sampling and returns the largest `VmRSS` seen, in KiB.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.max_kib.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_tokens() {
        assert_eq!(
            super::redact("send `Authorization: Bearer abc123` (x) Bearer z"),
            "send `Authorization: Bearer <redacted>` (x) Bearer <redacted>"
        );
    }
}
