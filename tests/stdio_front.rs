//! The stdio front under normal and hostile use: framing, bad input, misbehaving upstreams,
//! clean exit on EOF with no child left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::time::Duration;

use common::*;

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn stdio_to_stdio_demo_echo_and_namespacing_with_two_upstreams() {
    let cfg = format!("{}\n{}", demo_upstream("a", &[]), demo_upstream("b", &[]));
    let mut p = StdioProxy::start(&cfg);
    let init = p.initialize("2025-06-18");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-warden");
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let (line, _) = p.recv_response("2");
    let names: Vec<String> = json(&line)["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"a__echo".to_string()) && names.contains(&"b__echo".to_string()),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')));
    p.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"b__echo","arguments":{"message":"routed"}}}"#);
    let (line, _) = p.recv_response("3");
    assert_eq!(json(&line)["result"]["content"][0]["text"], "routed");
    // The upstream's own name is not an exposed name when namespaced.
    p.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}"#);
    let (line, _) = p.recv_response("4");
    assert_eq!(json(&line)["error"]["code"], -32602);
}

#[test]
fn stdio_hostile_input_gets_clear_errors_and_the_session_survives() {
    let mut p = StdioProxy::start(&demo_upstream("demo", &[]));
    p.initialize("2025-11-25");
    // Malformed JSON → parse error with null id.
    p.send("{not json");
    let v = json(&p.recv());
    assert_eq!(v["error"]["code"], -32700);
    assert!(v["id"].is_null());
    // Invalid UTF-8.
    p.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\",\"x\":\"\xff\xfe\"}\n");
    let v = json(&p.recv());
    assert_eq!(v["error"]["code"], -32700);
    // Valid JSON, not JSON-RPC.
    p.send(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#);
    assert_eq!(json(&p.recv())["error"]["code"], -32600);
    p.send("[1,2,3]");
    assert_eq!(
        json(&p.recv())["error"]["code"],
        -32600,
        "batches refused in 2025-11-25"
    );
    // Duplicate id while the first is in flight.
    p.send(r#"{"jsonrpc":"2.0","id":"dup","method":"tools/call","params":{"name":"slow","arguments":{"steps":3,"delay_ms":100}}}"#);
    p.send(r#"{"jsonrpc":"2.0","id":"dup","method":"ping"}"#);
    let first = json(&p.recv());
    assert_eq!(first["id"], "dup");
    assert_eq!(first["error"]["code"], -32600, "{first}");
    let second = json(&p.recv());
    assert_eq!(second["result"]["content"][0]["text"], "done after 3 steps");
    // Still serving.
    p.send(r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"message":"alive"}}}"#);
    let (line, _) = p.recv_response("10");
    assert_eq!(json(&line)["result"]["content"][0]["text"], "alive");
}

#[test]
fn stdio_last_line_without_newline_is_served_then_clean_exit() {
    let mut p = StdioProxy::start(&demo_upstream("demo", &[]));
    p.initialize("2025-11-25");
    p.send_raw(br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"tail"}}}"#);
    p.close_stdin();
    let (line, _) = p.recv_response("5");
    assert_eq!(json(&line)["result"]["content"][0]["text"], "tail");
    let pid = p.child.id();
    let st = p.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "{st:?}");
    assert!(descendants(pid).is_empty());
}

#[test]
fn stdio_eof_ends_every_child() {
    let cfg = format!("{}\n{}", demo_upstream("a", &[]), demo_upstream("b", &[]));
    let mut p = StdioProxy::start(&cfg);
    p.initialize("2025-11-25");
    let pid = p.child.id();
    assert_eq!(descendants(pid).len(), 2, "one child per upstream");
    p.close_stdin();
    p.wait_exit(Duration::from_secs(15));
    eventually(Duration::from_secs(5), "children gone", || {
        descendants(pid).is_empty()
    });
}

#[test]
fn stdio_upstream_garbage_on_stdout_is_skipped() {
    let mut p = StdioProxy::start(&golden_upstream("golden"));
    p.initialize("2025-11-25");
    p.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"garbage","arguments":{}}}"#);
    let (line, before) = p.recv_response("1");
    assert!(
        before.is_empty(),
        "garbage must not reach the agent: {before:?}"
    );
    assert_eq!(json(&line)["result"]["content"][0]["text"], "after garbage");
}

#[test]
fn stdio_upstream_dying_mid_call_fails_the_call_and_restarts_on_next_use() {
    let mut p = StdioProxy::start(&golden_upstream("golden"));
    p.initialize("2025-11-25");
    p.send(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hang","arguments":{}}}"#,
    );
    p.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"die","arguments":{}}}"#,
    );
    // Both pending calls fail at once with a JSON-RPC error (the list_changed that announces
    // the upstream's tools are gone may come before or between them).
    let mut answers = vec![];
    let mut saw_list_changed = false;
    while answers.len() < 2 {
        let v = json(&p.recv());
        if v.get("method").is_some() {
            saw_list_changed |= v["method"] == "notifications/tools/list_changed";
        } else {
            answers.push(v);
        }
    }
    let (a, b) = (answers[0].clone(), answers[1].clone());
    let mut ids = vec![a["id"].clone(), b["id"].clone()];
    ids.sort_by_key(|v| v.as_i64());
    assert_eq!(ids, vec![serde_json::json!(1), serde_json::json!(2)]);
    for v in [&a, &b] {
        assert_eq!(v["error"]["code"], -32001, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("golden"),
            "{v}"
        );
    }
    // The agent is told the tool list changed; then the next use restarts the upstream.
    for _ in 0..10 {
        p.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"golden","arguments":{}}}"#);
        let (line, before) = p.recv_response("3");
        saw_list_changed |= before
            .iter()
            .any(|l| l.contains("notifications/tools/list_changed"));
        if json(&line).get("result").is_some() {
            assert!(saw_list_changed);
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("upstream was not restarted");
}

/// Found from outside: after its second crash a stdio upstream never came back for the
/// session (its tools withdrawn, so nothing asked for it again). Killed every 2 s for 30 s with
/// 64 calls in flight each time, it must answer every call (a result or an error, never a hang)
/// and serve again once the kills stop, within the restart backoff's cap (30 s).
#[test]
fn stdio_upstream_killed_every_two_seconds_comes_back_after_the_kills_stop() {
    let mut p = StdioProxy::start(&demo_upstream("demo", &[]));
    p.initialize("2025-11-25");
    let call = |id: u64| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{id}"}}}}}}"#
        )
    };
    let mut next = 100u64;
    let mut killed = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let first = next;
        for _ in 0..64 {
            p.send(&call(next));
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
        for pid in descendants(p.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
        // Every call of the batch is answered, whatever the upstream's state.
        let mut answered = std::collections::HashSet::new();
        while answered.len() < 64 {
            let line = p
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|| panic!("a call hung: {} of 64 answered", answered.len()));
            let v = json(&line);
            if let Some(id) = v.get("id").and_then(|i| i.as_u64()) {
                assert!((first..next).contains(&id), "{line}");
                answered.insert(id);
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(killed >= 5, "the upstream was killed only {killed} times");
    // The kills stopped: within the backoff cap the tool is back and calls succeed.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        p.send(&call(next));
        let (line, _) = p.recv_response(&next.to_string());
        next += 1;
        if json(&line)["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains('m'))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream did not come back after the kills stopped: {line}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn stdio_cancellation_reaches_the_upstream_and_no_answer_follows() {
    let mut p = StdioProxy::start(&demo_upstream("demo", &[]));
    p.initialize("2025-11-25");
    p.send(r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"slow","arguments":{"steps":50,"delay_ms":100},"_meta":{"progressToken":"tok"}}}"#);
    // Progress arrives with the agent's own token.
    let prog = json(&p.recv());
    assert_eq!(prog["method"], "notifications/progress");
    assert_eq!(prog["params"]["progressToken"], "tok");
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1","reason":"user"}}"#);
    // Drain progress sent before the upstream saw the cancellation; no answer to c1 may come.
    p.send(r#"{"jsonrpc":"2.0","id":"after","method":"ping"}"#);
    let (_, before) = p.recv_response(r#""after""#);
    assert!(
        before.iter().all(|l| !l.contains(r#""id":"c1""#)),
        "{before:?}"
    );
    // The upstream stopped: no more progress for the cancelled call.
    std::thread::sleep(Duration::from_millis(400));
    while let Some(l) = p.recv_timeout(Duration::from_millis(300)) {
        assert!(!l.contains(r#""id":"c1""#), "answer after cancel: {l}");
    }
    assert!(
        p.recv_timeout(Duration::from_millis(500)).is_none(),
        "progress kept coming after cancellation"
    );
}

#[test]
fn stdio_slow_upstream_joins_after_initialize_with_list_changed() {
    let demo = demo_bin().display().to_string();
    let cfg = format!(
        "[proxy]\ninitialize_wait_secs = 1\n{}\n[upstreams.slow]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 2; exec {demo} stdio\"]\n",
        demo_upstream("fast", &[])
    );
    let mut p = StdioProxy::start(&cfg);
    let started = std::time::Instant::now();
    p.initialize("2025-11-25");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "initialize waited for the slow upstream"
    );
    p.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let (line, _) = p.recv_response("1");
    assert!(
        line.contains("fast__echo") && !line.contains("slow__echo"),
        "{line}"
    );
    let changed = p.recv();
    assert!(
        changed.contains("notifications/tools/list_changed"),
        "{changed}"
    );
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let (line, _) = p.recv_response("2");
    assert!(line.contains("slow__echo"), "{line}");
}

#[test]
fn stdio_upstream_runs_under_its_configured_resource_limits() {
    let cfg = format!(
        "{}[upstreams.golden.limits]\nopen_files = 64\nmemory_mb = 1024\ncpu_secs = 600\n",
        golden_upstream("golden")
    );
    let mut p = StdioProxy::start(&cfg);
    p.initialize("2025-11-25");
    let kids = descendants(p.child.id());
    assert_eq!(kids.len(), 1, "{kids:?}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", kids[0])).unwrap();
    let row = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(row("Max open files"), "64", "{limits}");
    assert_eq!(
        row("Max address space"),
        (1024u64 * 1024 * 1024).to_string(),
        "{limits}"
    );
    assert_eq!(row("Max cpu time"), "600", "{limits}");
    // And it still serves.
    p.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"golden","arguments":{}}}"#);
    let (line, _) = p.recv_response("1");
    assert!(line.contains("structuredContent"));
}

/// How some agents (Node's child_process, for one) hand a child its stdio: a socket pair rather
/// than pipes. mcp-warden serves it the same way, and EOF (the agent shutting its side) still
/// ends the session and its children. With stderr on the same pipe as stdout (`2>&1`), logs keep
/// flowing (stdout stays blocking) and every MCP line is still valid JSON-RPC.
#[test]
fn stdio_over_a_socket_pair_and_with_stderr_merged_into_stdout() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &demo_upstream("demo", &[]));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new(warden_bin())
        .args(["stdio", "--config"])
        .arg(&cfg)
        .env("XDG_STATE_HOME", dir.path())
        .stdin(Stdio::from(OwnedFd::from(theirs.try_clone().unwrap())))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut w = ours.try_clone().unwrap();
    let mut r = BufReader::new(ours.try_clone().unwrap());
    writeln!(w, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#).unwrap();
    writeln!(
        w,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(w, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"over a socket"}}}}}}"#).unwrap();
    let mut got = vec![];
    for _ in 0..10 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let v = json(&line);
        let done = v["id"] == 2;
        got.push(v);
        if done {
            break;
        }
    }
    let answer = got.iter().find(|v| v["id"] == 2).expect("an answer to 2");
    assert_eq!(
        answer["result"]["content"][0]["text"], "over a socket",
        "{got:?}"
    );
    ours.shutdown(std::net::Shutdown::Write).unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no exit on EOF");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(descendants(pid).is_empty());

    // stderr merged into stdout (`2>&1`): logs and MCP share the pipe; the MCP lines are intact
    // and the session is served to the end.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec "$0" stdio --log debug --config "$1" 2>&1"#)
        .arg(warden_bin())
        .arg(&cfg)
        .env("XDG_STATE_HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#).unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"still here"}}}}}}"#).unwrap();
    let mut lines = vec![];
    for line in out.lines().map_while(Result::ok) {
        let done = line.starts_with('{') && json(&line)["id"] == 2;
        lines.push(line);
        if done {
            break;
        }
    }
    drop(stdin);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('{') && l.contains("still here")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| !l.starts_with('{')),
        "log lines are there too: {lines:?}"
    );
    assert!(child.wait().unwrap().success());
}

/// Stdin from a regular file (not a pipe or socket: the blocking adapter serves it) and stdout
/// to a file: every line is served, then a clean exit at the end of the file.
#[test]
fn stdio_from_a_file_to_a_file() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &demo_upstream("demo", &[]));
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"from a file"}}}"#,
            "\n"
        ),
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    let status = Command::new(warden_bin())
        .args(["stdio", "--config"])
        .arg(&cfg)
        .env("XDG_STATE_HOME", dir.path())
        .stdin(Stdio::from(std::fs::File::open(&input).unwrap()))
        .stdout(Stdio::from(std::fs::File::create(&output).unwrap()))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let out = std::fs::read_to_string(&output).unwrap();
    let answer = out
        .lines()
        .map(json)
        .find(|v| v["id"] == 2)
        .unwrap_or_else(|| panic!("no answer to 2: {out}"));
    assert_eq!(answer["result"]["content"][0]["text"], "from a file");
}

/// Found from outside: a value nested 100,000 deep inside `arguments` was forwarded, the
/// upstream answered with `id: null`, and the call hung until its timeout; an upstream line
/// over the limit was dropped and the call waited too. Each is now refused at once, under the
/// request's id, and the session goes on.
#[test]
fn stdio_deep_json_and_oversized_answers_fail_at_once_under_their_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("golden.log");
    let cfg = format!(
        "[proxy]\nmax_line_bytes = 200000\n{}env = {{ GOLDEN_LOG = {:?}, HUGE_BYTES = \"300000\" }}\n",
        golden_upstream("golden"),
        log.display().to_string()
    );
    let mut p = StdioProxy::start(&cfg);
    p.initialize("2025-11-25");
    let quick = Duration::from_secs(5);
    let answer = |p: &StdioProxy, id: &str| -> serde_json::Value {
        let end = std::time::Instant::now() + quick;
        loop {
            let line = p
                .recv_timeout(end.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or_else(|| panic!("no answer to {id} within {quick:?}"));
            let v = json(&line);
            if v.get("method").is_none() && v["id"] == json(id) {
                return v;
            }
        }
    };
    // The agent's deep arguments never reach the upstream.
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    p.send(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"golden","arguments":{{"v":{deep}}}}}}}"#
    ));
    let v = answer(&p, "1");
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 128"),
        "{v}"
    );
    // Deep in the middle of a message whose id comes last.
    p.send(&format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"golden","arguments":{{"v":{deep}}}}},"id":"last"}}"#
    ));
    assert_eq!(answer(&p, r#""last""#)["error"]["code"], -32600);
    // An upstream answer nested too deep, and one over the line limit (its id written last).
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"deep/answer"}"#);
    let v = answer(&p, "2");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper"),
        "{v}"
    );
    p.send(r#"{"jsonrpc":"2.0","id":3,"method":"huge/answer"}"#);
    let v = answer(&p, "3");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than the limit (200000 bytes)"),
        "{v}"
    );
    // The session goes on.
    p.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"golden","arguments":{}}}"#);
    assert!(answer(&p, "4").get("result").is_some());
    let seen = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        seen.lines().filter(|l| l.starts_with("tools/call")).count(),
        1,
        "only the last call reached the upstream: {seen}"
    );
}

/// A 2025-03-26 agent's batch over stdio: one array answers every request in it (an item that
/// is not a message answered in place), while the progress of a call in it arrives on its own
/// line before the array.
#[test]
fn stdio_batch_is_answered_as_one_array_with_progress_outside_it() {
    let mut p = StdioProxy::start(&demo_upstream("demo", &[]));
    p.initialize("2025-03-26");
    p.send(
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"steps":2,"delay_ms":10},"_meta":{"progressToken":"p"}}},42]"#,
    );
    let mut progress = 0;
    let array = loop {
        let v = json(&p.recv());
        if v.is_array() {
            break v;
        }
        assert_eq!(v["method"], "notifications/progress", "{v}");
        assert_eq!(v["params"]["progressToken"], "p", "{v}");
        progress += 1;
    };
    assert!(progress >= 1, "the call's progress was not passed on");
    let items = array.as_array().unwrap();
    assert_eq!(items.len(), 3, "{array}");
    let by_id = |id: serde_json::Value| items.iter().find(|i| i["id"] == id).unwrap();
    assert_eq!(by_id(1.into())["result"], serde_json::json!({}));
    assert_eq!(
        by_id(2.into())["result"]["content"][0]["text"],
        "done after 2 steps"
    );
    assert_eq!(by_id(serde_json::Value::Null)["error"]["code"], -32600);
}
