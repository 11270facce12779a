//! The container image, built and run for real: Debian's Docker daemon (started here on a
//! private socket and data root), a base image made from Debian's archive with `debootstrap`
//! (no image registry is reachable), and docker/Dockerfile's runtime stage built from the
//! binaries cargo built for these tests — the image users get, stage for stage, on another base.
//! It starts as the non-root user, its health check turns healthy, it runs with a read-only
//! root and no capabilities, keeps its generated token 0600 in the state volume, keeps a grant
//! across a restart, is decided from the host's CLI through the control socket in the volume,
//! and stops gracefully on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// Debian's docker client (the daemon's own version), whatever else is on PATH.
const DOCKER: &str = "/usr/bin/docker";

/// A Docker daemon of this test's own: its socket, data and exec roots in a temporary
/// directory, no iptables, no bridge. Stopped by its pid when dropped.
struct Daemon {
    child: Child,
    sock: String,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        assert!(
            Path::new("/usr/sbin/dockerd").exists() && Path::new(DOCKER).exists(),
            "Debian's docker.io is not installed (scripts/install-test-deps.sh installs it)"
        );
        // Short paths: a Unix socket path is limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("mwd")
            .tempdir_in("/tmp")
            .unwrap();
        // Others (the image's user, and the host CLI run as that user) go through it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let sock = format!("unix://{}/docker.sock", dir.path().display());
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("/usr/sbin/dockerd")
            .args(["--host", &sock])
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .args(["--iptables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let d = Daemon { child, sock, dir };
        let started = std::time::Instant::now();
        while !d.docker(&["version"]).status.success() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the Docker daemon did not start (it needs root): {}",
                std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(["-H", &self.sock]).args(args);
        c
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs docker and returns its stdout; fails the test with its stderr otherwise.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "-v", "mw"]);
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..150 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Debian bookworm base image from Debian's archive (`debootstrap --variant=minbase`),
/// imported into the daemon as `mw-base:bookworm`.
fn base_image(d: &Daemon) {
    let rootfs = d.dir.path().join("rootfs");
    let o = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap (scripts/install-test-deps.sh installs it)");
    assert!(
        o.status.success(),
        "debootstrap: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let imported = d
        .cmd(&["import", "-", "mw-base:bookworm"])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of the base failed");
    assert!(imported.status.success(), "docker import failed");
    let _ = std::fs::remove_dir_all(&rootfs);
}

/// The runtime stage of docker/Dockerfile, from the binaries cargo built for this test run.
fn build_image(d: &Daemon) {
    let bin_dir = warden_bin().parent().unwrap().to_path_buf();
    let prebuilt = bin_dir.strip_prefix(root()).unwrap().display().to_string();
    let _ = demo_bin(); // built on demand
    let o = d
        .cmd(&[
            "build",
            "--network",
            "host",
            "-f",
            "docker/Dockerfile",
            "--target",
            "runtime",
            "--build-arg",
            "BINARIES=prebuilt",
            "--build-arg",
            &format!("PREBUILT_DIR={prebuilt}"),
            "--build-arg",
            "BASE=mw-base:bookworm",
            "-t",
            "mcp-warden:test",
            ".",
        ])
        .current_dir(root())
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `docker run` of the image as the compose file runs it: read-only root, no capabilities, no
/// new privileges, the state on a volume (a host directory here).
fn run(d: &Daemon, state: &Path, config: &Path) {
    d.ok(&[
        "run",
        "-d",
        "--name",
        "mw",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "-v",
        &format!("{}:/var/lib/mcp-warden", state.display()),
        "-v",
        &format!("{}:/etc/mcp-warden/test.toml:ro", config.display()),
        "mcp-warden:test",
        "serve",
        "--config",
        "/etc/mcp-warden/test.toml",
        "--listen",
        "127.0.0.1:8787",
    ]);
}

fn health(d: &Daemon) -> String {
    d.ok(&["inspect", "--format", "{{.State.Health.Status}}", "mw"])
}

/// An agent inside the container on the stdio front (`docker exec -i`): the same image, config
/// and state volume as the server.
struct Agent {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Agent {
    fn start(d: &Daemon) -> Agent {
        let mut child = d
            .cmd(&[
                "exec",
                "-i",
                "mw",
                "mcp-warden",
                "stdio",
                "--config",
                "/etc/mcp-warden/test.toml",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut a = Agent { child, out };
        a.request(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"agent","version":"1"}}}"#);
        a
    }

    /// Sends a request and returns its answer (notifications before it skipped).
    fn request(&mut self, line: &str) -> serde_json::Value {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        if line.contains("\"method\":\"initialize\"") {
            writeln!(
                stdin,
                r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
            )
            .unwrap();
        }
        loop {
            let mut l = String::new();
            assert!(
                self.out.read_line(&mut l).unwrap() > 0,
                "the agent's stdio ended"
            );
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            if v.get("id").is_some() {
                return v;
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator's CLI on the host, on a container's state directory: run as the state's owner
/// (the CLI refuses a state directory that belongs to another user), uid 10001 like the image's
/// user, with a config that names only that directory.
fn host_cli(dir: &Path, state: &Path) -> impl Fn(&[&str]) -> Output {
    let cfg = dir.join(format!(
        "host-{}.toml",
        state.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nstate_dir = {:?}\n[upstreams.demo]\ncommand = \"true\"\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    move |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        Command::new(warden_bin())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .uid(10001)
            .gid(10001)
            .output()
            .unwrap()
    }
}

const SEND: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"bob@example.com","subject":"hi","body":"hello"}}}"#;

#[test]
fn the_image_runs_as_shipped_non_root_read_only_and_keeps_its_state() {
    let d = Daemon::start();
    base_image(&d);
    build_image(&d);

    // The state volume: a host directory the image's user (uid 10001) owns.
    let state = d.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    nix::unistd::chown(&state, Some(nix::unistd::Uid::from_raw(10001)), None).unwrap();
    let config = d.dir.path().join("test.toml");
    std::fs::write(
        &config,
        "[proxy]\nstate_dir = \"/var/lib/mcp-warden\"\n[upstreams.demo]\ncommand = \"/usr/local/bin/mcp-warden-demo\"\nargs = [\"stdio\"]\n",
    )
    .unwrap();
    run(&d, &state, &config);

    // Non-root, healthy by its own HEALTHCHECK, no capabilities, nothing writable but the
    // volume and /tmp.
    assert_eq!(d.ok(&["exec", "mw", "id", "-u"]), "10001");
    eventually(Duration::from_secs(60), "the container healthy", || {
        health(&d) == "healthy"
    });
    let status = d.ok(&["exec", "mw", "cat", "/proc/1/status"]);
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    assert_eq!(cap_eff, "0000000000000000", "{status}");
    assert!(!d
        .docker(&["exec", "mw", "touch", "/usr/local/bin/x"])
        .status
        .success());
    assert!(d
        .docker(&["exec", "mw", "touch", "/var/lib/mcp-warden/x"])
        .status
        .success());
    // The generated token: in the volume, readable by its owner only.
    let token = state.join("http-token");
    eventually(Duration::from_secs(10), "the token file", || token.exists());
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A consent call held inside the container is decided from the host, through the control
    // socket in the volume; allowed always, the grant outlives a restart.
    let cli = host_cli(d.dir.path(), &state);
    let mut agent = Agent::start(&d);
    let waiter = std::thread::spawn(move || {
        let v = agent.request(SEND);
        (agent, v)
    });
    eventually(Duration::from_secs(20), "held, seen from the host", || {
        String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout).contains("send_email")
    });
    let decided = cli(&["approve", "allow-always"]);
    assert!(
        decided.status.success(),
        "{}",
        String::from_utf8_lossy(&decided.stderr)
    );
    let (agent, sent) = waiter.join().unwrap();
    drop(agent);
    assert_eq!(sent["result"]["structuredContent"]["sent"], true, "{sent}");

    d.ok(&["restart", "mw"]);
    eventually(Duration::from_secs(60), "healthy again", || {
        health(&d) == "healthy"
    });
    let grants = String::from_utf8_lossy(&cli(&["grants", "list"]).stdout).to_string();
    assert!(
        grants.contains("send_email"),
        "the grant was lost: {grants}"
    );
    let mut agent = Agent::start(&d);
    let again = agent.request(SEND);
    assert_eq!(
        again["result"]["structuredContent"]["sent"], true,
        "the grant did not apply after the restart: {again}"
    );
    drop(agent);

    // SIGTERM (docker stop): a graceful shutdown, exit status 0.
    d.ok(&["stop", "--time", "20", "mw"]);
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.State.ExitCode}}", "mw"]),
        "0"
    );
    let logs = d.docker(&["logs", "mw"]);
    let logs =
        String::from_utf8_lossy(&logs.stderr).to_string() + &String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("shutting down"), "{logs}");
    d.ok(&["rm", "mw"]);

    compose_runs_for_real(&d);
}

/// docker/compose.yaml, run with docker-compose and this machine's override
/// (tests/container/compose.override.yaml: local images, the state on a host directory): its
/// network, published port, command and baked config as published; mcp-warden healthy in front
/// of the third-party server (server-everything over Streamable HTTP, service `everything`) and
/// its bundled demo; an agent container calls the third-party tool through it by its compose
/// name, and a call held for approval is approved from the host with the CLI, through the
/// control socket in the state volume; the published port answers on the host's loopback.
fn compose_runs_for_real(d: &Daemon) {
    d.ok(&["tag", "mcp-warden:test", "mcp-warden:local"]);
    let state = d.dir.path().join("compose-state");
    std::fs::create_dir(&state).unwrap();
    nix::unistd::chown(&state, Some(nix::unistd::Uid::from_raw(10001)), None).unwrap();
    let token = "compose-agent-token-0123456789abcdef";
    let compose = |args: &[&str]| {
        let mut c = Command::new("/usr/bin/docker-compose");
        c.args([
            "-f",
            "docker/compose.yaml",
            "-f",
            "tests/container/compose.override.yaml",
        ])
        .args(["-p", "mwtest"])
        .args(args)
        .current_dir(root())
        .env("DOCKER_HOST", &d.sock)
        .env("MCP_WARDEN_AGENT_TOKEN", token)
        .env("WARDEN_STATE", &state)
        .env("NODE_HARNESS", node_dir())
        .env("AGENT_DIR", root().join("tests/container"));
        c
    };
    let up = compose(&["up", "-d", "--no-build", "mcp-warden", "everything"])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "docker-compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    struct Down<'a>(&'a dyn Fn(&[&str]) -> Command);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down", "--timeout", "10"]).output();
        }
    }
    let _down = Down(&compose);
    eventually(
        Duration::from_secs(60),
        "mcp-warden healthy under compose",
        || {
            d.ok(&[
                "inspect",
                "--format",
                "{{.State.Health.Status}}",
                "mwtest_mcp-warden_1",
            ]) == "healthy"
        },
    );

    // The agent container: the third-party tool through mcp-warden, then a held call.
    let agent = compose(&["run", "--rm", "smoke"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cli = host_cli(d.dir.path(), &state);
    eventually(
        Duration::from_secs(120),
        "the agent's send_email held",
        || String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout).contains("send_email"),
    );
    assert!(cli(&["approve", "allow-once"]).status.success());
    // The published port: 127.0.0.1:8787 on the host (refused without the agent's token).
    let r = post("http://127.0.0.1:8787/mcp", None, INIT);
    assert_eq!(r.status(), 401);
    let out = agent.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "agent: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        lines[0].to_string().contains("from the agent container"),
        "the third-party tool: {}",
        lines[0]
    );
    assert_eq!(
        lines[1]["result"]["structuredContent"]["sent"], true,
        "the held call: {}",
        lines[1]
    );
}

/// docker/compose.yaml is valid as users run it (checked with Debian's docker-compose 1.29,
/// which is stricter than Compose v2 about top-level keys), and refuses to start without the
/// agent's token.
#[test]
fn the_published_compose_file_validates() {
    let compose = |token: Option<&str>| {
        let mut c = Command::new("/usr/bin/docker-compose");
        c.args(["-f", "docker/compose.yaml", "config"])
            .current_dir(root())
            .env_remove("MCP_WARDEN_AGENT_TOKEN");
        if let Some(t) = token {
            c.env("MCP_WARDEN_AGENT_TOKEN", t);
        }
        c.output()
            .expect("docker-compose (scripts/install-test-deps.sh installs it)")
    };
    let ok = compose(Some("a-long-random-token-for-the-check-0123"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let config = String::from_utf8_lossy(&ok.stdout);
    for want in [
        "read_only: true",
        "no-new-privileges:true",
        "- ALL",
        "127.0.0.1",
    ] {
        assert!(config.contains(want), "missing {want}:\n{config}");
    }
    let missing = compose(None);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("set MCP_WARDEN_AGENT_TOKEN"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
