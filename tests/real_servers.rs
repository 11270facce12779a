//! mcp-warden in front of real third-party MCP servers (the reference `server-everything`
//! over stdio, Streamable HTTP and legacy SSE; the Python `mcp-server-time`), driven by real
//! clients (the official TypeScript SDK client, the inspector CLI).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

fn everything_js() -> String {
    node_dir()
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
        .display()
        .to_string()
}

fn everything_stdio(name: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        everything_js()
    )
}

fn time_upstream(name: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = {:?}\n",
        python_venv_bin("mcp-server-time").display().to_string()
    )
}

/// server-everything in an HTTP mode, bound to loopback; returns the child and its port.
fn everything_http(mode: &str) -> (Child, u16) {
    everything_http_on(mode, 0)
}

/// server-everything in an HTTP mode on `port` (0: any), bound to loopback.
fn everything_http_on(mode: &str, port: u16) -> (Child, u16) {
    let mut child = Command::new("node")
        .current_dir(node_dir())
        .args(["--require", "./bind-loopback.cjs"])
        .arg(everything_js())
        .arg(mode)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server-everything");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let port = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "server-everything exited before listening"
        );
        if let Some(rest) = line
            .trim()
            .strip_prefix("bind-loopback: listening on 127.0.0.1:")
        {
            break rest.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    (child, port)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn call(url: &str, tool: &str, args: &str) -> serde_json::Value {
    node_client(&[
        "--http",
        url,
        "--scenario",
        "call",
        "--tool",
        tool,
        "--args",
        args,
    ])
}

fn content_types(result: &serde_json::Value) -> Vec<String> {
    result["result"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no content: {result}"))
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn http_to_stdio_everything_and_python_time_lists_and_every_content_type() {
    let proxy = HttpProxy::start(&format!(
        "{}\n{}",
        everything_stdio("everything"),
        time_upstream("time")
    ));
    let list = node_client(&["--http", &proxy.url, "--scenario", "list"]);
    assert_eq!(list["serverInfo"]["name"], "mcp-warden");
    let tools: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for want in [
        "everything__echo",
        "everything__get-tiny-image",
        "everything__trigger-sampling-request",
        "time__get_current_time",
        "time__convert_time",
    ] {
        assert!(
            tools.contains(&want),
            "{want} missing from {tools:?}\n{}",
            proxy.logs()
        );
    }
    assert!(!list["prompts"].as_array().unwrap().is_empty());
    assert!(!list["resources"].as_array().unwrap().is_empty());

    let echo = call(
        &proxy.url,
        "everything__echo",
        r#"{"message":"through the warden"}"#,
    );
    assert_eq!(
        echo["result"]["content"][0]["text"],
        "Echo: through the warden"
    );
    assert!(
        content_types(&call(&proxy.url, "everything__get-tiny-image", "{}"))
            .contains(&"image".to_string())
    );
    assert!(content_types(&call(
        &proxy.url,
        "everything__get-resource-links",
        r#"{"count":2}"#
    ))
    .contains(&"resource_link".to_string()));
    assert!(content_types(&call(
        &proxy.url,
        "everything__get-resource-reference",
        "{}"
    ))
    .contains(&"resource".to_string()));
    let structured = call(
        &proxy.url,
        "everything__get-structured-content",
        r#"{"location":"New York"}"#,
    );
    assert!(
        structured["result"]["structuredContent"].is_object(),
        "{structured}"
    );
    let t = call(
        &proxy.url,
        "time__get_current_time",
        r#"{"timezone":"UTC"}"#,
    );
    assert!(
        t["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("UTC"),
        "{t}"
    );

    // Prompts by exposed name, resources by URI across two upstreams.
    let prompt = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "prompt",
        "--name",
        "everything__simple-prompt",
    ]);
    assert!(prompt["messages"].is_array(), "{prompt}");
    let uri = list["resources"][0]["uri"].as_str().unwrap();
    let res = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "resources",
        "--uri",
        uri,
    ]);
    assert_eq!(res["contents"][0]["uri"], uri);
}

#[test]
fn http_to_stdio_everything_sampling_elicitation_progress_logging() {
    let proxy = HttpProxy::start(&everything_stdio("everything"));
    let s = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "sampling",
        "--tool",
        "trigger-sampling-request",
        "--args",
        r#"{"prompt":"hello"}"#,
    ]);
    assert_eq!(s["samplingRequests"].as_array().unwrap().len(), 1, "{s}");
    assert!(s["result"].to_string().contains("sampled-by-client"), "{s}");

    let e = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "elicitation",
        "--tool",
        "trigger-elicitation-request",
        "--args",
        "{}",
    ]);
    assert_eq!(e["elicitationRequests"].as_array().unwrap().len(), 1, "{e}");
    assert!(
        e["result"].to_string().contains("from-client")
            || e["result"].to_string().contains("accept"),
        "{e}"
    );

    let p = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "progress",
        "--tool",
        "trigger-long-running-operation",
        "--args",
        r#"{"duration":1,"steps":3}"#,
    ]);
    assert_eq!(p["progress"].as_array().unwrap().len(), 3, "{p}");

    let l = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "logging",
        "--tool",
        "toggle-simulated-logging",
        "--args",
        "{}",
        "--grace-ms",
        "500",
    ]);
    assert!(!l["logs"].as_array().unwrap().is_empty(), "{l}");
}

#[test]
fn stdio_front_driven_by_sdk_client_with_cancellation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}\n{}",
            everything_stdio("everything"),
            demo_upstream("demo", &[])
        ),
    );
    let warden = warden_bin().display().to_string();
    let cfg = cfg.display().to_string();
    let list = node_client(&[
        "--scenario",
        "list",
        "--stdio",
        "--",
        &warden,
        "stdio",
        "--config",
        &cfg,
    ]);
    let tools: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"everything__echo") && tools.contains(&"demo__slow"),
        "{tools:?}"
    );
    let c = node_client(&[
        "--scenario",
        "cancel",
        "--tool",
        "demo__slow",
        "--args",
        r#"{"steps":100,"delay_ms":100}"#,
        "--after-ms",
        "300",
        "--after-tool",
        "demo__echo",
        "--after-args",
        r#"{"message":"after-cancel"}"#,
        "--stdio",
        "--",
        &warden,
        "stdio",
        "--config",
        &cfg,
    ]);
    assert_eq!(c["cancelled"], true, "{c}");
    assert_eq!(c["after"]["content"][0]["text"], "after-cancel", "{c}");
}

#[test]
fn http_to_streamable_http_everything_with_sampling() {
    let (child, port) = everything_http("streamableHttp");
    let _k = Kill(child);
    let proxy = HttpProxy::start(&format!(
        "[upstreams.everything]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    ));
    let echo = call(&proxy.url, "echo", r#"{"message":"over http"}"#);
    assert_eq!(echo["result"]["content"][0]["text"], "Echo: over http");
    let s = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "sampling",
        "--tool",
        "trigger-sampling-request",
        "--args",
        r#"{"prompt":"hi"}"#,
    ]);
    assert!(s["result"].to_string().contains("sampled-by-client"), "{s}");
    let p = node_client(&[
        "--http",
        &proxy.url,
        "--scenario",
        "progress",
        "--tool",
        "trigger-long-running-operation",
        "--args",
        r#"{"duration":1,"steps":2}"#,
    ]);
    assert_eq!(p["progress"].as_array().unwrap().len(), 2, "{p}");
}

#[test]
fn http_to_legacy_sse_everything_explicit_and_detected() {
    let (child, port) = everything_http("sse");
    let _k = Kill(child);
    for cfg in [
        format!(
            "[upstreams.everything]\nurl = \"http://127.0.0.1:{port}/sse\"\ntransport = \"sse\"\n"
        ),
        format!("[upstreams.everything]\nurl = \"http://127.0.0.1:{port}/sse\"\n"),
    ] {
        let proxy = HttpProxy::start(&cfg);
        let echo = call(&proxy.url, "echo", r#"{"message":"legacy"}"#);
        assert_eq!(
            echo["result"]["content"][0]["text"], "Echo: legacy",
            "{cfg}: {echo}"
        );
    }
}

#[test]
fn inspector_cli_calls_through_the_http_front() {
    let proxy = HttpProxy::start(&demo_upstream("demo", &[]));
    // inspector-cli 1.0.3 must run from node_modules (see tests/node/README.md).
    let out = Command::new("./.bin/mcp-inspector-cli")
        .current_dir(node_dir().join("node_modules"))
        .args([
            "--cli",
            &proxy.url,
            "--transport",
            "http",
            "--method",
            "tools/call",
            "--tool-name",
            "add",
            "--tool-arg",
            "a=2",
            "--tool-arg",
            "b=40",
        ])
        .output()
        .expect("run inspector-cli");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("inspector JSON");
    assert_eq!(v["structuredContent"]["sum"], 42.0, "{v}");
}

/// The demo server over HTTP on a fixed port; returns the child.
fn demo_http(port: u16) -> Child {
    spawn_listening(Command::new(demo_bin()).args([
        "http",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]))
    .0
}

#[test]
fn http_upstream_restarted_loses_our_session_and_is_reinitialised_transparently() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = Kill(demo_http(port));
    let proxy = HttpProxy::start(&format!(
        "[upstreams.demo]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    ));
    let sid = open_session(&proxy.url);
    let call = |id: u64| {
        let r = post(
            &proxy.url,
            Some(&sid),
            &format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{id}"}}}}}}"#
            ),
        );
        messages(r).pop().unwrap()
    };
    assert_eq!(call(1)["result"]["content"][0]["text"], "m1");
    drop(first);
    let _second = Kill(demo_http(port));
    // The new server knows nothing of our session: 404 → new upstream session → retried.
    assert_eq!(call(2)["result"]["content"][0]["text"], "m2");
}

/// Found from outside: server-everything restarted under load answers 400 ("No valid session
/// ID provided"), not the specification's 404, for the session it forgot, and mcp-warden never
/// re-initialised: every later call failed. Restarted every 5 s under 8 callers, calls succeed
/// again after every restart, each answer is the caller's own, and the last call after the
/// restarts succeeds at once.
#[test]
fn http_upstream_everything_restarted_under_load_answers_400_and_is_reinitialised() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Kill(everything_http_on("streamableHttp", port).0);
    let proxy = HttpProxy::start(&format!(
        "[upstreams.everything]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    ));
    let sid = open_session(&proxy.url);
    let stop = Arc::new(AtomicBool::new(false));
    // Successful calls, counted per server generation.
    let generation = Arc::new(AtomicUsize::new(0));
    let ok_in: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(vec![0; 4]));
    let callers: Vec<_> = (0..8)
        .map(|t| {
            let (url, sid, stop, generation, ok_in) = (
                proxy.url.clone(),
                sid.clone(),
                stop.clone(),
                generation.clone(),
                ok_in.clone(),
            );
            std::thread::spawn(move || {
                let client = http();
                // Bounded: at most 100,000 calls per caller.
                for n in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let gen = generation.load(Ordering::Relaxed);
                    let body = format!(
                        r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"c{t}-{n}"}}}}}}"#
                    );
                    let Ok(r) = post_with(&client, &url, Some(&sid), &body) else {
                        continue;
                    };
                    let Some(answer) = messages(r).pop() else {
                        continue;
                    };
                    if let Some(text) = answer["result"]["content"][0]["text"].as_str() {
                        assert_eq!(text, format!("Echo: c{t}-{n}"), "another caller's answer");
                        ok_in.lock().unwrap()[gen] += 1;
                    }
                }
            })
        })
        .collect();
    let wait_for_calls = |gen: usize| {
        eventually(
            Duration::from_secs(20),
            "calls succeed after the restart",
            || ok_in.lock().unwrap()[gen] >= 20,
        )
    };
    wait_for_calls(0);
    for gen in 1..4 {
        // The fault schedule (a restart every 5 s), not a wait for a condition.
        std::thread::sleep(Duration::from_secs(5));
        drop(server);
        generation.store(gen, Ordering::Relaxed);
        server = Kill(everything_http_on("streamableHttp", port).0);
        wait_for_calls(gen);
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    let v = messages(post(
        &proxy.url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":"last","method":"tools/call","params":{"name":"echo","arguments":{"message":"after"}}}"#,
    ))
    .pop()
    .unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "Echo: after", "{v}");
    eventually(
        Duration::from_secs(5),
        "the re-initialisation is logged",
        || proxy.logs().contains("re-initialised"),
    );
}

/// Found from outside: `mcp-warden tools` declared no client capabilities, so servers that list
/// some tools only for clients able to answer sampling, elicitation or roots (server-everything
/// does) showed fewer tools than a real client sees.
#[test]
fn tools_command_declares_what_a_typical_client_declares() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &everything_stdio("everything"));
    let o = Command::new(warden_bin())
        .args(["tools", "--config"])
        .arg(&cfg)
        .env("XDG_STATE_HOME", dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for tool in [
        "trigger-sampling-request",
        "trigger-elicitation-request",
        "get-roots-list",
    ] {
        assert!(
            out.contains(&format!("{tool}    (everything: {tool})")),
            "{tool} missing:\n{out}"
        );
    }
}

/// A forward HTTP proxy on loopback for the test: relays each connection to `target` byte for
/// byte and records each connection's request line and `Proxy-Authorization`/`Authorization`
/// headers (first request of the connection).
fn recording_forward_proxy(
    target: std::net::SocketAddr,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let log = log.clone();
            std::thread::spawn(move || {
                let Ok(mut server) = std::net::TcpStream::connect(target) else {
                    return;
                };
                let mut head = [0u8; 4096];
                let n = client.read(&mut head).unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]).to_string();
                for l in text.lines().take_while(|l| !l.is_empty()) {
                    let lower = l.to_ascii_lowercase();
                    if l.starts_with("POST ")
                        || l.starts_with("GET ")
                        || l.starts_with("DELETE ")
                        || lower.starts_with("authorization:")
                    {
                        log.lock().unwrap().push(l.to_string());
                    }
                }
                let _ = server.write_all(&head[..n]);
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    (url, seen)
}

/// The HTTP upstream path for the environment's proxy and for credentials in the URL (what
/// reqwest is kept for): with `HTTP_PROXY` set, every request to the upstream goes through the
/// proxy in absolute form, credentials in the URL arrive as Basic authentication, and calls
/// work as they do directly.
#[test]
fn http_upstream_through_the_environments_proxy_with_url_credentials() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Kill(demo_http(port));
    let (proxy_url, seen) = recording_forward_proxy(format!("127.0.0.1:{port}").parse().unwrap());
    let warden = HttpProxy::start_raw(
        &format!(
            "[proxy]\nauth = \"none\"\n[upstreams.demo]\nurl = \"http://ops:s3cret@127.0.0.1:{port}/mcp\"\n"
        ),
        &[("HTTP_PROXY", proxy_url.as_str()), ("NO_PROXY", "")],
    );
    let sid = open_session(&warden.url);
    let r = post(
        &warden.url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"via the proxy"}}}"#,
    );
    assert_eq!(
        messages(r).pop().unwrap()["result"]["content"][0]["text"],
        "via the proxy"
    );
    let seen = seen.lock().unwrap().clone();
    let target = format!("POST http://127.0.0.1:{port}/mcp HTTP/1.1");
    assert!(seen.contains(&target), "{seen:?}");
    // ops:s3cret in Base64.
    assert!(
        seen.iter()
            .any(|l| l.eq_ignore_ascii_case("authorization: Basic b3BzOnMzY3JldA==")),
        "{seen:?}"
    );
    // The password is never logged (the log is at debug level here).
    let logs = warden.logs();
    assert!(logs.contains("demo"), "{logs}");
    assert!(!logs.contains("s3cret"), "{logs}");
}
