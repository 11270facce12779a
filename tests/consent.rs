//! The consent envelope, end to end: an upstream asks for confirmation, mcp-warden holds the
//! agent's call, a human decides through the CLI (the control API), and the agent sees only the
//! final result — never an `action_id`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

struct Setup {
    proxy: StdioProxy,
    cfg: std::path::PathBuf,
    state_home: std::path::PathBuf,
    log: std::path::PathBuf,
    actions: std::path::PathBuf,
}

fn setup(extra_env: &str, proxy_section: &str) -> Setup {
    setup_env(extra_env, proxy_section, &[])
}

fn setup_env(extra_env: &str, proxy_section: &str, env: &[(&str, &str)]) -> Setup {
    let tmp = tempfile::tempdir().unwrap().keep();
    let log = tmp.join("golden.log");
    let actions = tmp.join("actions.log");
    let cfg_text = format!(
        "{proxy_section}{}env = {{ GOLDEN_LOG = {:?}, CONSENT_LOG = {:?}{extra_env} }}\n",
        golden_upstream("golden"),
        log.display().to_string(),
        actions.display().to_string()
    );
    let mut proxy = StdioProxy::start_env(&cfg_text, env);
    proxy.initialize("2025-11-25");
    let cfg = proxy.dir.path().join("warden.toml");
    let state_home = proxy.dir.path().to_path_buf();
    Setup {
        proxy,
        cfg,
        state_home,
        log,
        actions,
    }
}

fn cli(s: &Setup, args: &[&str]) -> Output {
    Command::new(warden_bin())
        .args(args)
        .arg("--config")
        .arg(&s.cfg)
        .env("XDG_STATE_HOME", &s.state_home)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pending_count(s: &Setup) -> usize {
    let o = cli(s, &["approvals", "list"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("wants golden/consent"))
        .count()
}

/// Calls the consent tool and waits until mcp-warden holds the call for a human.
fn call_until_held(s: &mut Setup, id: u32, x: &str) {
    call_consent(s, id, x, "");
    eventually(Duration::from_secs(10), "held", || pending_count(s) == 1);
}

fn call_consent(s: &mut Setup, id: u32, x: &str, extra: &str) {
    s.proxy.send(&format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"consent","arguments":{{"x":"{x}"{extra}}}}}}}"#
    ));
}

/// The audit log as `mcp-warden audit list` prints it, for a config naming `state_dir`.
fn audit_log(state_dir: &std::path::Path) -> String {
    let cfg = state_dir.join("audit-cli.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nstate_dir = {:?}\n",
            state_dir.display().to_string()
        ),
    )
    .unwrap();
    let o = Command::new(warden_bin())
        .args(["audit", "list", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Waits until the SDK servers' "Transfer 5 to bob" is held by `p`, and approves it once with
/// the CLI.
fn approve_transfer(p: &StdioProxy) {
    let cli = |args: &[&str]| operator_cli(p.dir.path(), args);
    eventually(Duration::from_secs(15), "held", || {
        String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout).contains("Transfer 5 to bob")
    });
    assert!(cli(&["approve", "allow-once"]).status.success());
}

fn action_ids(s: &Setup) -> Vec<String> {
    std::fs::read_to_string(&s.actions)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn assert_no_action_id(s: &Setup, seen: &[String]) {
    for a in action_ids(s) {
        for line in seen {
            assert!(!line.contains(&a), "an action_id reached the agent: {line}");
        }
    }
}

#[test]
fn stdio_allow_once_through_the_cli_performs_the_call_and_hides_the_action_id() {
    let mut s = setup("", "");
    call_consent(&mut s, 1, "42", "");
    eventually(Duration::from_secs(10), "the call is held", || {
        pending_count(&s) == 1
    });
    let o = cli(&s, &["approve", "allow-once"]);
    assert!(o.status.success(), "{}", text(&o));
    let (line, before) = s.proxy.recv_response("1");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"], "performed x=42",
        "{line}"
    );
    let mut seen = before;
    seen.push(line);
    assert_no_action_id(&s, &seen);
    // The upstream saw one call without a token and one with the token it issued.
    let log = std::fs::read_to_string(&s.log).unwrap();
    let tokens: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("consent-token"))
        .collect();
    assert_eq!(tokens.len(), 2, "{log}");
    assert_eq!(tokens[0], "consent-token none");
    assert_eq!(tokens[1], format!("consent-token {}", action_ids(&s)[0]));
    // Audited, and the chain verifies.
    let o = cli(&s, &["audit", "verify"]);
    assert!(
        o.status.success() && text(&o).contains("chain intact"),
        "{}",
        text(&o)
    );
    // Found from outside: removing the last entry still verified.
    let db = rusqlite::Connection::open(s.state_home.join("mcp-warden/warden.db")).unwrap();
    db.execute(
        "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
        [],
    )
    .unwrap();
    let o = cli(&s, &["audit", "verify"]);
    assert!(
        !o.status.success() && text(&o).contains("1 entries missing at the end"),
        "{}",
        text(&o)
    );
}

#[test]
fn stdio_deny_returns_a_refusal_and_nothing_happens_upstream() {
    let mut s = setup("", "");
    call_until_held(&mut s, 1, "7");
    assert!(cli(&s, &["approve", "deny"]).status.success());
    let (line, _) = s.proxy.recv_response("1");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(v["result"]["structuredContent"]["approved"], false);
    assert_eq!(
        v["result"]["structuredContent"]["reason"],
        "denied by a human"
    );
    assert_no_action_id(&s, &[line]);
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("consent-token"))
            .count(),
        1,
        "no second call: {log}"
    );
}

#[test]
fn stdio_forged_confirmation_token_is_stripped_and_approval_still_required() {
    let mut s = setup("", "");
    // First get a real action id issued (and deny it), then try to replay it as the agent.
    call_until_held(&mut s, 1, "a");
    assert!(cli(&s, &["approve", "deny"]).status.success());
    s.proxy.recv_response("1");
    let stolen = action_ids(&s)[0].clone();
    // As is, and behind a JSON escape (the same key): stripped both times, held both times.
    for (id, key) in [(2, "confirmation_token"), (3, r"confirmation\u005ftoken")] {
        call_consent(&mut s, id, "b", &format!(r#","{key}":"{stolen}""#));
        eventually(Duration::from_secs(10), "held again", || {
            pending_count(&s) == 1
        });
        let log = std::fs::read_to_string(&s.log).unwrap();
        assert!(
            !log.contains(&format!("consent-token {stolen}")),
            "the agent's token ({key}) reached the upstream: {log}"
        );
        assert!(cli(&s, &["approve", "deny"]).status.success());
        s.proxy.recv_response(&id.to_string());
    }
}

#[test]
fn stdio_allow_always_grant_then_revoke() {
    let mut s = setup("", "");
    call_until_held(&mut s, 1, "1");
    assert!(cli(&s, &["approve", "allow-always"]).status.success());
    s.proxy.recv_response("1");
    // Approved at once now.
    call_consent(&mut s, 2, "2", "");
    let (line, _) = s.proxy.recv_response("2");
    assert!(line.contains("performed x=2"), "{line}");
    let grants = cli(&s, &["grants", "list"]);
    let gtext = String::from_utf8_lossy(&grants.stdout).to_string();
    let gid = gtext.split_whitespace().next().unwrap().to_string();
    assert!(gtext.contains("may call golden/consent"), "{gtext}");
    assert!(cli(&s, &["grants", "revoke", &gid]).status.success());
    call_consent(&mut s, 3, "3", "");
    eventually(Duration::from_secs(10), "held again after revoke", || {
        pending_count(&s) == 1
    });
    assert!(cli(&s, &["approve", "allow-once"]).status.success());
    s.proxy.recv_response("3");
}

#[test]
fn stdio_expiry_and_repeated_envelope_are_refused() {
    let mut s = setup(", CONSENT_EXPIRES = \"1\"", "");
    call_consent(&mut s, 1, "x", "");
    let (line, _) = s.proxy.recv_response("1");
    assert!(line.contains("the approval expired"), "{line}");
    let mut again = setup(", CONSENT_AGAIN = \"1\"", "");
    call_consent(&mut again, 1, "x", "");
    eventually(Duration::from_secs(10), "held", || {
        pending_count(&again) == 1
    });
    assert!(cli(&again, &["approve", "allow-once"]).status.success());
    let (line, _) = again.proxy.recv_response("1");
    assert!(line.contains("asked for confirmation again"), "{line}");
    assert_no_action_id(&again, &[line]);
}

#[test]
fn several_pending_approvals_need_an_id_and_can_be_decided_out_of_order() {
    let mut s = setup("", "");
    for i in 1..=10 {
        call_consent(&mut s, i, &format!("n{i}"), "");
    }
    eventually(Duration::from_secs(15), "ten held", || {
        pending_count(&s) == 10
    });
    let o = cli(&s, &["approve", "allow-once"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("mcp-warden approve "),
        "prints the commands to copy: {}",
        text(&o)
    );
    let list = String::from_utf8_lossy(&cli(&s, &["approvals", "list"]).stdout).to_string();
    let ids: Vec<(String, String)> = list
        .lines()
        .filter(|l| l.contains("wants golden/consent"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .zip(
            list.lines()
                .filter(|l| l.contains("arguments:"))
                .map(|l| l.to_string()),
        )
        .collect();
    // Decide in a scrambled order; even numbers are denied.
    let find = |x: &str| {
        ids.iter()
            .find(|(_, a)| a.contains(&format!("\"{x}\"")))
            .unwrap_or_else(|| {
                panic!(
                    "{x} not in {list}\naudit:\n{}",
                    audit_log(&s.state_home.join("mcp-warden"))
                )
            })
            .0
            .clone()
    };
    for i in [7, 2, 10, 1, 5, 9, 3, 8, 4, 6] {
        let d = if i % 2 == 0 { "deny" } else { "allow-once" };
        assert!(
            cli(&s, &["approve", &find(&format!("n{i}")), d])
                .status
                .success(),
            "n{i}"
        );
    }
    let mut results = std::collections::HashMap::new();
    for _ in 0..10 {
        let line = s.proxy.recv();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        results.insert(v["id"].as_u64().unwrap(), line);
    }
    for i in 1..=10u64 {
        if i % 2 == 0 {
            assert!(results[&i].contains("denied by a human"), "{}", results[&i]);
        } else {
            assert!(
                results[&i].contains(&format!("performed x=n{i}")),
                "{}",
                results[&i]
            );
        }
    }
    assert_no_action_id(&s, &results.values().cloned().collect::<Vec<_>>());
}

#[test]
fn http_waiting_call_gets_progress_and_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[proxy]\nauth = \"none\"\nstate_dir = {:?}\n[approvals]\nprogress_interval_secs = 1\n{}",
        tmp.path().display().to_string(),
        golden_upstream("golden")
    );
    let p = HttpProxy::start(&cfg);
    let sid = open_session(&p.url);
    let url = p.url.clone();
    let call = post_streaming(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"consent","arguments":{"x":"h"},"_meta":{"progressToken":"p"}}}"#,
    );
    let cfg_path = p.dir.path().join("warden.toml");
    let cli = |args: &[&str]| {
        Command::new(warden_bin())
            .args(args)
            .arg("--config")
            .arg(&cfg_path)
            .output()
            .unwrap()
    };
    eventually(Duration::from_secs(10), "held", || {
        String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout)
            .contains("wants golden/consent")
    });
    // Progress while waiting, before anyone decides.
    let progress = call.next();
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    assert!(
        progress["params"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for approval: Do the thing with x=h"),
        "{progress}"
    );
    assert!(cli(&["approve", "allow-once"]).status.success());
    let rest = call.rest();
    let body = serde_json::to_string(&rest).unwrap();
    assert_eq!(
        rest.last().unwrap()["result"]["content"][0]["text"],
        "performed x=h",
        "{body}"
    );
    assert!(!body.contains("act-"), "no action id on the wire: {body}");
}

#[test]
fn operator_rule_holds_a_real_servers_tool_before_forwarding() {
    let js = node_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[proxy]\nauth = \"none\"\nstate_dir = {:?}\n[[approvals.require]]\ntools = [\"echo\"]\n[upstreams.everything]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        tmp.path().display().to_string(),
        js.display().to_string()
    );
    let p = HttpProxy::start(&cfg);
    let cfg_path = p.dir.path().join("warden.toml");
    let cli = |args: &[&str]| {
        Command::new(warden_bin())
            .args(args)
            .arg("--config")
            .arg(&cfg_path)
            .output()
            .unwrap()
    };
    let call = |msg: &'static str| {
        let url = p.url.clone();
        let sid = open_session(&url);
        std::thread::spawn(move || {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{msg}"}}}}}}"#
            );
            messages(post(&url, Some(&sid), &body)).pop().unwrap()
        })
    };
    let held = call("please");
    eventually(Duration::from_secs(10), "held before forwarding", || {
        let out = String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout).to_string();
        out.contains("wants everything/echo")
            && out.contains("(policy;")
            && out.contains(r#"{"message":"please"}"#)
    });
    assert!(cli(&["approve", "deny"]).status.success());
    let v = held.join().unwrap();
    assert_eq!(
        v["result"]["structuredContent"]["reason"], "denied by a human",
        "{v}"
    );
    let held = call("allowed");
    eventually(Duration::from_secs(10), "held", || {
        String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout)
            .contains("wants everything/echo")
    });
    assert!(cli(&["approve", "allow-once"]).status.success());
    assert_eq!(
        held.join().unwrap()["result"]["content"][0]["text"],
        "Echo: allowed"
    );
    // Tools without a matching rule are not held.
    let url = p.url.clone();
    let sid = open_session(&url);
    let v = messages(post(&url, Some(&sid), r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2}}}"#)).pop().unwrap();
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains('3'),
        "{v}"
    );
}

#[test]
fn demo_send_email_needs_one_approval_for_rule_and_envelope_together() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[proxy]\nauth = \"none\"\nstate_dir = {:?}\n[[approvals.require]]\nannotations = [\"openWorldHint\"]\n{}",
        tmp.path().display().to_string(),
        demo_upstream("demo", &[])
    );
    let p = HttpProxy::start(&cfg);
    let cfg_path = p.dir.path().join("warden.toml");
    let cli = |args: &[&str]| {
        Command::new(warden_bin())
            .args(args)
            .arg("--config")
            .arg(&cfg_path)
            .output()
            .unwrap()
    };
    let url = p.url.clone();
    let sid = open_session(&url);
    let sid2 = sid.clone();
    let held = std::thread::spawn(move || {
        messages(post(&url, Some(&sid2), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"ops@example.com","subject":"hi","body":"b"}}}"#)).pop().unwrap()
    });
    eventually(Duration::from_secs(10), "held by the rule", || {
        String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout)
            .contains("wants demo/send_email")
    });
    assert!(cli(&["approve", "allow-once"]).status.success());
    let v = held.join().unwrap();
    assert_eq!(v["result"]["structuredContent"]["sent"], true, "{v}");
    let count = messages(post(&p.url, Some(&sid), r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sent_count","arguments":{}}}"#)).pop().unwrap();
    assert_eq!(count["result"]["content"][0]["text"], "1");
}

#[test]
fn http_delete_cancels_a_pending_approval_and_a_restart_closes_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().display().to_string();
    let cfg = format!(
        "[proxy]\nauth = \"none\"\nstate_dir = {state:?}\n{}",
        golden_upstream("golden")
    );
    let mut p = HttpProxy::start(&cfg);
    let cfg_path = p.dir.path().join("warden.toml");
    let cli = |args: &[&str]| {
        Command::new(warden_bin())
            .args(args)
            .arg("--config")
            .arg(&cfg_path)
            .output()
            .unwrap()
    };
    let list = || String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout).to_string();
    let hold = |p: &HttpProxy| {
        let url = p.url.clone();
        let sid = open_session(&url);
        let s2 = sid.clone();
        std::thread::spawn(move || {
            let _ = post(&url, Some(&s2), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"consent","arguments":{"x":"d"}}}"#).text();
        });
        sid
    };
    let sid = hold(&p);
    eventually(Duration::from_secs(10), "held", || {
        list().contains("wants golden/consent")
    });
    assert_eq!(
        http()
            .delete(&p.url)
            .header("mcp-session-id", &sid)
            .send()
            .unwrap()
            .status(),
        200
    );
    eventually(
        Duration::from_secs(10),
        "cancelled with its session",
        || list().contains("no pending approvals"),
    );
    // Kill the proxy with an approval pending; the next start closes it as abandoned.
    hold(&p);
    eventually(Duration::from_secs(10), "held again", || {
        list().contains("wants golden/consent")
    });
    let _ = p.child.kill();
    let _ = p.child.wait();
    let p2 = HttpProxy::start(&cfg);
    let audit = || audit_log(tmp.path());
    eventually(
        Duration::from_secs(10),
        "leftover closed as abandoned at start",
        || audit().contains("approval.abandoned"),
    );
    assert!(audit().contains("approval.cancelled"));
    let o = Command::new(warden_bin())
        .args(["audit", "verify", "--config"])
        .arg(p2.dir.path().join("warden.toml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

/// A minimal HTTP receiver: records (headers, body) of each POST and answers 200.
fn receiver() -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let Some((head, body)) = read_http_request(&c) else {
                continue;
            };
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((head, String::from_utf8_lossy(&body).to_string()));
        }
    });
    (url, rx)
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

#[test]
fn webhooks_are_signed_and_an_unreachable_channel_fails_closed() {
    let (url, events) = receiver();
    let secret = "webhook-secret-0123456789";
    let mut s = setup_env(
        "",
        &format!("[[approvals.webhooks]]\nurl = {url:?}\nsecret_env = \"HOOK_SECRET\"\n"),
        &[("HOOK_SECRET", secret)],
    );
    call_consent(&mut s, 1, "w", "");
    let (head, body) = events
        .recv_timeout(Duration::from_secs(10))
        .expect("approval.requested delivered");
    assert_eq!(header(&head, "x-warden-event"), "approval.requested");
    let ts = header(&head, "x-warden-timestamp");
    let sig = header(&head, "x-warden-signature");
    // Verify independently (Python's hmac), not with our own signing code.
    let py = format!(
        "import hmac,hashlib,sys; print('sha256='+hmac.new({:?}.encode(), ({:?}+'.'+sys.stdin.read()).encode(), hashlib.sha256).hexdigest(), end='')",
        secret, ts
    );
    let mut child = Command::new("python3")
        .args(["-c", &py])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let expected = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(sig, expected, "signature");
    assert!(
        body.contains("Do the thing with x=w") && !body.contains("act-"),
        "{body}"
    );
    assert!(cli(&s, &["approve", "allow-once"]).status.success());
    let (head, _) = events
        .recv_timeout(Duration::from_secs(10))
        .expect("approval.decided delivered");
    assert_eq!(header(&head, "x-warden-event"), "approval.decided");
    s.proxy.recv_response("1");

    // A webhook nobody listens on: nobody would hear of the approval, so the call is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg_text = format!(
        "[[approvals.webhooks]]\nurl = \"http://{dead}/hook\"\nsecret_env = \"HOOK_SECRET\"\n{}env = {{ CONSENT_LOG = {:?} }}\n",
        golden_upstream("golden"),
        s.actions.display().to_string()
    );
    let mut p = StdioProxy::start_env(&cfg_text, &[("HOOK_SECRET", secret)]);
    p.initialize("2025-11-25");
    p.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"consent","arguments":{"x":"z"}}}"#);
    let (line, _) = p.recv_response("9");
    assert!(line.contains("the approval system failed"), "{line}");
}

#[test]
fn remote_operator_decides_over_http_and_agents_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[proxy]\nstate_dir = {:?}\n[operators.alice]\ntoken_env = \"OP_TOKEN\"\n[agents.bot]\ntoken_env = \"AGENT_TOKEN\"\ntools.allow = [\"*\"]\n{}",
        tmp.path().display().to_string(),
        golden_upstream("golden")
    );
    let op = "operator-token-0123456789";
    let agent = "agent-token-0123456789abc";
    let p = HttpProxy::start_raw(&cfg, &[("OP_TOKEN", op), ("AGENT_TOKEN", agent)]);
    let control = p.url.replace("/mcp", "/control");
    let rpc = |token: &str, method: &str, params: serde_json::Value| {
        http()
            .post(&control)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                    .to_string(),
            )
            .send()
            .unwrap()
    };
    // The agent holds a call.
    let url = p.url.clone();
    let held = std::thread::spawn(move || {
        let init = http()
            .post(&url)
            .header("authorization", format!("Bearer {agent}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INIT)
            .send()
            .unwrap();
        let sid = init.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let r = http().post(&url).header("authorization", format!("Bearer {agent}")).header("mcp-session-id", &sid).header("content-type", "application/json").header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"consent","arguments":{"x":"remote"}}}"#).send().unwrap();
        messages(r).pop().unwrap()
    });
    let mut id = String::new();
    eventually(
        Duration::from_secs(10),
        "held and listed for the operator",
        || {
            let v: serde_json::Value = serde_json::from_str(
                &rpc(op, "approvals.list", serde_json::json!({}))
                    .text()
                    .unwrap(),
            )
            .unwrap();
            match v["result"].as_array().and_then(|a| a.first()) {
                Some(a) => {
                    id = a["id"].as_str().unwrap().to_string();
                    true
                }
                None => false,
            }
        },
    );
    // The agent's own token cannot see or decide approvals; neither can no token.
    assert_eq!(
        rpc(agent, "approvals.list", serde_json::json!({})).status(),
        401
    );
    assert_eq!(
        rpc(
            agent,
            "approvals.decide",
            serde_json::json!({"id": id, "decision": "allow-once"})
        )
        .status(),
        401
    );
    assert_eq!(
        http().post(&control).body("{}").send().unwrap().status(),
        401
    );
    // Mistyped requests get a clear error and decide nothing.
    let answer = |method: &str, params: serde_json::Value| -> serde_json::Value {
        serde_json::from_str(&rpc(op, method, params).text().unwrap()).unwrap()
    };
    for (method, params, code, says) in [
        (
            "approvals.decide",
            serde_json::json!({"id": id, "decision": "yes"}),
            -32602,
            "unknown variant `yes`",
        ),
        (
            "approvals.decide",
            serde_json::json!({"id": id, "decison": "allow-once"}),
            -32602,
            "unknown field `decison`",
        ),
        (
            "approvals.decide",
            serde_json::json!({"decision": "allow-once"}),
            -32602,
            "missing field `id`",
        ),
        (
            "approvals.purge",
            serde_json::json!({}),
            -32601,
            "Method not found",
        ),
    ] {
        let v = answer(method, params);
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    assert_eq!(
        answer("approvals.list", serde_json::json!({}))["result"][0]["id"],
        id.as_str(),
        "still pending"
    );
    let r = rpc(
        op,
        "approvals.decide",
        serde_json::json!({"id": id, "decision": "allow-once"}),
    );
    assert_eq!(r.status(), 200);
    let v = held.join().unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"], "performed x=remote",
        "{v}"
    );
    let audit = audit_log(tmp.path());
    assert!(
        audit.contains("http:operator:alice"),
        "the decision names channel and operator: {audit}"
    );
}

#[test]
fn grants_narrowed_to_the_approved_arguments() {
    let mut s = setup(
        "",
        "[approvals]\ngrant_scope = \"arguments\"\ngrant_ttl_secs = 3600\n",
    );
    call_until_held(&mut s, 1, "same");
    assert!(cli(&s, &["approve", "allow-always"]).status.success());
    s.proxy.recv_response("1");
    call_consent(&mut s, 2, "same", "");
    let (line, _) = s.proxy.recv_response("2");
    assert!(
        line.contains("performed x=same"),
        "same arguments: approved at once: {line}"
    );
    call_consent(&mut s, 3, "other", "");
    eventually(Duration::from_secs(10), "other arguments held", || {
        pending_count(&s) == 1
    });
    assert!(cli(&s, &["approve", "deny"]).status.success());
    s.proxy.recv_response("3");
    let grants = String::from_utf8_lossy(&cli(&s, &["grants", "list"]).stdout).to_string();
    // The TTL shows as a date and a duration a person reads (was "until unix time N").
    assert!(
        grants.contains("(until 20")
            && (grants.contains("Z, in 59m") || grants.contains("Z, in 1h0m)")),
        "the TTL shows: {grants}"
    );
}

/// The approvals page in a real browser (Debian's Chromium via playwright-core): sign in with an
/// operator token, click "Allow once", and the agent's blocked call completes.
#[test]
fn approvals_page_in_headless_chromium_completes_the_blocked_call() {
    let tmp = tempfile::tempdir().unwrap();
    let op = "operator-token-for-the-browser";
    let cfg = format!(
        "[proxy]\nauth = \"none\"\nstate_dir = {:?}\n[operators.alice]\ntoken_env = \"OP_TOKEN\"\n{}",
        tmp.path().display().to_string(),
        golden_upstream("golden")
    );
    let p = HttpProxy::start_raw(&cfg, &[("OP_TOKEN", op)]);
    // The page is served with a strict CSP and the usual security headers.
    let page = http()
        .get(p.url.replace("/mcp", "/approvals"))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    // Without the page's CSRF header, a cookie alone cannot decide.
    let login = http()
        .post(p.url.replace("/mcp", "/approvals/login"))
        .body(format!(r#"{{"token":"{op}"}}"#))
        .send()
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("HttpOnly; SameSite=Strict"));
    let forged = http()
        .post(p.url.replace("/mcp", "/control"))
        .header("cookie", &cookie)
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"approvals.list"}"#)
        .send()
        .unwrap();
    assert_eq!(forged.status(), 403, "CSRF: cookie without the header");
    let forged_logout = http()
        .post(p.url.replace("/mcp", "/approvals/logout"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(
        forged_logout.status(),
        403,
        "CSRF: no cross-site sign-out either"
    );
    let bad = http()
        .post(p.url.replace("/mcp", "/approvals/login"))
        .body(r#"{"token":"not-an-operator-token"}"#)
        .send()
        .unwrap();
    assert_eq!(bad.status(), 401);

    let sid = open_session(&p.url);
    let url = p.url.clone();
    let held = std::thread::spawn(move || {
        messages(post(&url, Some(&sid), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"consent","arguments":{"x":"browser"}}}"#)).pop().unwrap()
    });
    let base = p.url.trim_end_matches("/mcp").to_string();
    let v = node_json("approve-in-browser.mjs", &[&base, op, "allow-once"]);
    assert_eq!(v["summary"], "Do the thing with x=browser");
    // Found from outside: the sign-in form never hid, nobody was shown as signed in, there was
    // no sign-out, and the arguments were one line of escaped JSON.
    assert_eq!(v["formHidden"], true, "{v}");
    assert_eq!(
        (&v["whoShown"], &v["operator"]),
        (&serde_json::json!(true), &serde_json::json!("alice")),
        "{v}"
    );
    assert_eq!(v["args"], "{\n  \"x\": \"browser\"\n}", "{v}");
    assert_eq!(v["signedOut"], true, "{v}");
    assert_eq!(
        v["consoleErrors"].as_array().map(|a| a.len()),
        Some(0),
        "no CSP violations or script errors: {v}"
    );
    let r = held.join().unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "performed x=browser",
        "{r}"
    );
    let audit = audit_log(tmp.path());
    assert!(audit.contains("http:operator:alice"));
}

/// An envelope server written with the official Python SDK (mcp 2.x): the token parameter it
/// declares is not advertised, the call is held, and an approval performs exactly one transfer.
#[test]
fn python_sdk_envelope_server_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("issued.log");
    let cfg = format!(
        "[upstreams.bank]\ncommand = {:?}\nargs = [{:?}]\nenv = {{ ENVELOPE_LOG = {:?} }}\n",
        python_venv_bin("python").display().to_string(),
        root()
            .join("tests/python/envelope_server.py")
            .display()
            .to_string(),
        log.display().to_string()
    );
    let mut p = StdioProxy::start(&cfg);
    p.initialize("2025-11-25");
    p.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let (list, _) = p.recv_response("1");
    assert!(
        list.contains("transfer_funds") && !list.contains("confirmation_token"),
        "{list}"
    );
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"transfer_funds","arguments":{"amount":5,"to":"bob"}}}"#);
    approve_transfer(&p);
    let (line, before) = p.recv_response("2");
    assert!(
        line.contains(r#"\"transferred\": 5"#) || line.contains(r#""transferred":5"#),
        "{line}"
    );
    let issued = std::fs::read_to_string(&log).unwrap();
    for a in issued.lines() {
        assert!(
            !line.contains(a) && before.iter().all(|b| !b.contains(a)),
            "action id leaked"
        );
    }
    p.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"transfers","arguments":{}}}"#);
    let (count, _) = p.recv_response("3");
    assert!(
        count.contains(r#""text":"1""#),
        "exactly one transfer: {count}"
    );
}

#[test]
fn stdio_eof_cancels_a_held_call_promptly() {
    let mut s = setup("", "");
    call_until_held(&mut s, 1, "eof");
    let started = std::time::Instant::now();
    s.proxy.close_stdin();
    s.proxy.wait_exit(Duration::from_secs(8));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit waited for the human"
    );
    let audit = audit_log(&s.state_home.join("mcp-warden"));
    assert!(audit.contains("approval.cancelled"), "{audit}");
}

/// Found from outside: a task-augmented call (MCP 2025-11-25 tasks) let the consent envelope,
/// `action_id` included, through `tasks/result`, and no approval was opened. Against the
/// official TypeScript SDK's task support: the task ids the agent sees are mcp-warden's,
/// `tasks/result` is held for a human, the approved call's result is the task's result (asked
/// again, the same), and no line the agent receives carries an issued `action_id`.
#[test]
fn stdio_task_augmented_call_is_held_in_tasks_result_and_the_action_id_never_reaches_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("issued.log");
    let cfg = format!(
        "[upstreams.bank]\ncommand = \"node\"\nargs = [{:?}]\nenv = {{ ENVELOPE_LOG = {:?} }}\n",
        node_dir().join("tasks-server.mjs").display().to_string(),
        log.display().to_string()
    );
    let mut p = StdioProxy::start(&cfg);
    let init = p.initialize("2025-11-25");
    assert!(
        init["result"]["capabilities"]["tasks"].is_object(),
        "{init}"
    );
    let mut seen: Vec<String> = vec![];
    fn ask(p: &mut StdioProxy, seen: &mut Vec<String>, id: u32, body: &str) -> serde_json::Value {
        p.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},{body}}}"#));
        let (line, before) = p.recv_response(&id.to_string());
        seen.extend(before);
        seen.push(line.clone());
        serde_json::from_str(&line).unwrap()
    }
    let created = ask(
        &mut p,
        &mut seen,
        2,
        r#""method":"tools/call","params":{"name":"transfer_funds","arguments":{"amount":5,"to":"bob"},"task":{"ttl":60000}}"#,
    );
    let task = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no task created: {created}"))
        .to_string();
    assert!(task.starts_with("mwt-"), "the upstream's own id: {created}");
    let got = ask(
        &mut p,
        &mut seen,
        3,
        &format!(r#""method":"tasks/get","params":{{"taskId":"{task}"}}"#),
    );
    assert_eq!(got["result"]["taskId"], task.as_str(), "{got}");
    // tasks/result is held until a human decides.
    p.send(&format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"tasks/result","params":{{"taskId":"{task}"}}}}"#
    ));
    approve_transfer(&p);
    let (line, before) = p.recv_response("4");
    seen.extend(before);
    seen.push(line.clone());
    assert!(line.contains(r#""transferred":5"#), "{line}");
    // Asked again, the task's result is the same, and no second transfer happens.
    let again = ask(
        &mut p,
        &mut seen,
        5,
        &format!(r#""method":"tasks/result","params":{{"taskId":"{task}"}}"#),
    );
    assert!(again.to_string().contains(r#""transferred":5"#), "{again}");
    let count = ask(
        &mut p,
        &mut seen,
        6,
        r#""method":"tools/call","params":{"name":"transfers","arguments":{}}"#,
    );
    assert_eq!(count["result"]["content"][0]["text"], "1", "{count}");
    // A task that is not this session's is unknown, whatever its id.
    for (id, other) in [(7, "mwt-00000000000000000000000000000000"), (8, "nope")] {
        let v = ask(
            &mut p,
            &mut seen,
            id,
            &format!(r#""method":"tasks/get","params":{{"taskId":"{other}"}}"#),
        );
        assert_eq!(v["error"]["code"], -32602, "{v}");
    }
    // tasks/list shows this session's task under our id only.
    let listed = ask(&mut p, &mut seen, 9, r#""method":"tasks/list","params":{}"#);
    let ids: Vec<&str> = listed["result"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["taskId"].as_str())
        .collect();
    assert_eq!(ids, vec![task.as_str()], "{listed}");
    // A plain task-capable tool through a task: its result arrives as is.
    let echo = ask(
        &mut p,
        &mut seen,
        10,
        r#""method":"tools/call","params":{"name":"slow_echo","arguments":{"message":"hello tasks"},"task":{}}"#,
    );
    let echo_task = echo["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ask(
        &mut p,
        &mut seen,
        11,
        &format!(r#""method":"tasks/result","params":{{"taskId":"{echo_task}"}}"#),
    );
    assert_eq!(r["result"]["content"][0]["text"], "hello tasks", "{r}");
    assert_eq!(
        r["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        echo_task.as_str(),
        "{r}"
    );
    // No line the agent received carried an action id the server issued.
    let issued = std::fs::read_to_string(&log).unwrap();
    assert!(!issued.trim().is_empty(), "the server issued no action id");
    for a in issued.lines() {
        for l in &seen {
            assert!(!l.contains(a), "an action_id reached the agent: {l}");
        }
    }
}

/// Found from outside: `approvals list`, `approvals watch` and `approve` printed the agent's
/// text (summary, arguments) raw, so escape sequences could erase and rewrite what the operator
/// read. An agent puts terminal controls (CSI clear-screen, a carriage return, an 8-bit CSI, a
/// right-to-left override, an OSC title) in its arguments: no operator output carries one.
#[test]
fn terminal_controls_from_an_agent_never_reach_the_operators_terminal() {
    use std::io::BufRead;
    let mut s = setup("", "");
    let hostile = r"\u001b[2J\u001b[H\rAPPROVED\u009b31m\u202eevil\u001b]0;pwned\u0007";
    let mut watch = Command::new(warden_bin())
        .args(["approvals", "watch", "--config"])
        .arg(&s.cfg)
        .env("XDG_STATE_HOME", &s.state_home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut note = String::new();
    std::io::BufReader::new(watch.stderr.take().unwrap())
        .read_line(&mut note)
        .unwrap();
    assert!(note.contains("watching approvals"), "{note}");
    let watched = std::io::BufReader::new(watch.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in watched.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    call_until_held(&mut s, 1, hostile);
    let unsafe_bytes = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        text.chars()
            .filter(|c| (c.is_control() && *c != '\n') || matches!(c, '\u{202a}'..='\u{202e}'))
            .count()
    };
    let list = cli(&s, &["approvals", "list"]);
    assert_eq!(unsafe_bytes(&list.stdout), 0, "{:?}", text(&list));
    assert!(
        text(&list).contains(r"\u001b[2J"),
        "shown escaped: {}",
        text(&list)
    );
    // The held call's event, as `approvals watch` prints it.
    let event = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("approvals watch printed the held call");
        if line.contains("Do the thing") {
            break line;
        }
    };
    assert_eq!(unsafe_bytes(event.as_bytes()), 0, "{event:?}");
    let v: serde_json::Value = serde_json::from_str(&event).expect("still JSON");
    assert!(v.to_string().contains("APPROVED"), "{v}");
    // `approve` without an id lists the one pending call before deciding it.
    let o = cli(&s, &["approve", "deny"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(unsafe_bytes(&o.stdout) + unsafe_bytes(&o.stderr), 0);
    let _ = s.proxy.recv_response("1");
    let audit = cli(&s, &["audit", "list"]);
    assert!(text(&audit).contains("Do the thing"), "{}", text(&audit));
    assert_eq!(unsafe_bytes(&audit.stdout), 0, "{}", text(&audit));
    let _ = watch.kill();
    let _ = watch.wait();
}

/// Found in review: the approval store (SQLite, synchronous = FULL, a 5 s busy timeout) ran on
/// the event loop, so one locked `warden.db` stalled every session for up to 5 s per refused
/// call. With another process holding the database's write lock, refused calls (which are
/// audited) and plain calls are all answered at once; the refusals are written once the lock
/// is released.
#[test]
fn a_locked_database_does_not_delay_calls() {
    use std::io::BufRead;
    let p = HttpProxy::start(&demo_upstream("demo", &[]));
    let sid = open_session(&p.url);
    let db = p.dir.path().join("mcp-warden/warden.db");
    assert!(db.exists());
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n\
             c.execute('COMMIT')\n",
        ])
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(locker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    // Before, each refused call blocked the proxy for the 5 s busy timeout: this client gives
    // up after 3 s for all six calls together.
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let call = |id: u32, name: &str| -> serde_json::Value {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"message":"m{id}"}}}}}}"#
        );
        let r = post_with(&impatient, &p.url, Some(&sid), &body)
            .expect("answered while the database is locked");
        messages(r).pop().unwrap()
    };
    for id in 0..3 {
        let refused = call(id, "no_such_tool");
        assert!(refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool"));
        assert_eq!(
            call(10 + id, "echo")["result"]["content"][0]["text"],
            format!("m{}", 10 + id)
        );
    }
    drop(locker.stdin.take());
    locker.wait().unwrap();
    // Written once the lock is gone (the store's thread waits for it, up to its busy timeout).
    eventually(Duration::from_secs(10), "the refusals are audited", || {
        audit_log(&p.dir.path().join("mcp-warden"))
            .matches("no_such_tool")
            .count()
            == 3
    });
}
