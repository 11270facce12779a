//! Byte-level transparency: what mcp-warden does not need to change reaches the other side
//! byte for byte (unknown fields and methods, `_meta`, integers beyond 2^53, escapes, every
//! content type, `structuredContent`, `isError`), and ids are restored exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use common::*;

/// The exact bytes the golden upstream answers after the id (see tests/fixtures).
fn golden_rest() -> String {
    let src = std::fs::read_to_string(root().join("tests/fixtures/golden_upstream.py")).unwrap();
    let start = src.find("GOLDEN = (").unwrap() + "GOLDEN = (".len();
    let end = src[start..].find("\n)\n").unwrap() + start;
    // Evaluate the Python string concatenation with python itself: no second implementation.
    let expr = &src[start..end];
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            &format!("import sys; sys.stdout.write({})", expr.trim()),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn stdio_to_stdio_result_bytes_are_unchanged_and_big_id_restored() {
    let mut p = StdioProxy::start(&golden_upstream("golden"));
    p.initialize("2025-11-25");
    let id = "123456789012345678901234567890";
    p.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"golden","arguments":{{}}}}}}"#));
    let (line, _) = p.recv_response(id);
    assert_eq!(
        line,
        format!(r#"{{"jsonrpc":"2.0","id":{id},{}}}"#, golden_rest())
    );
}

#[test]
fn stdio_unknown_method_request_reaches_upstream_byte_for_byte() {
    let mut p = StdioProxy::start(&golden_upstream("golden"));
    p.initialize("2025-11-25");
    let sent = r#"{"jsonrpc":"2.0","id":"s\u00e9-1","method":"echo/raw","params":{"weird":[1e400,-0.0,"\ud83d\ude00",18446744073709551616],"_meta":{"progressToken":"t","x":{"y":[]}}},"extraTopLevel":{"k":true}}"#;
    p.send(sent);
    let (line, _) = p.recv_response(r#""s\u00e9-1""#);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let received = v["result"]["received"].as_str().unwrap();
    // Only the id differs: mcp-warden gives each upstream request its own id.
    let id_re = |s: &str| {
        let i = s.find("\"id\":").unwrap() + 5;
        let j = i + s[i..].find(",\"method\"").unwrap();
        format!("{}<ID>{}", &s[..i], &s[j..])
    };
    assert_eq!(id_re(received), id_re(sent));
    assert!(
        line.starts_with(r#"{"jsonrpc":"2.0","id":"s\u00e9-1","#),
        "{line}"
    );
}

#[test]
fn stdio_notification_with_unknown_fields_passes_unchanged() {
    let mut p = StdioProxy::start(&golden_upstream("golden"));
    p.initialize("2025-11-25");
    p.send(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"notify","arguments":{}}}"#);
    let (_, before) = p.recv_response("7");
    assert!(
        before.contains(&r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"big":98765432109876543210,"s":"\u00e9"},"logger":"golden"},"extra":1}"#.to_string()),
        "{before:?}"
    );
}

#[test]
fn http_to_stdio_result_bytes_are_unchanged_json_auto_and_sse() {
    let id = "-9007199254740993";
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"golden","arguments":{{}}}}}}"#
    );
    let expected = format!(r#"{{"jsonrpc":"2.0","id":{id},{}}}"#, golden_rest());

    let proxy = HttpProxy::start(&format!(
        "[proxy]\nresponse_mode = \"json\"\n{}",
        golden_upstream("golden")
    ));
    let sid = open_session(&proxy.url);
    let r = post(&proxy.url, Some(&sid), &call);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().unwrap(), expected);

    // The default (`auto`) answers this quick call with JSON too.
    let proxy = HttpProxy::start(&golden_upstream("golden"));
    let sid = open_session(&proxy.url);
    let r = post(&proxy.url, Some(&sid), &call);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().unwrap(), expected);

    let proxy = HttpProxy::start(&format!(
        "[proxy]\nresponse_mode = \"sse\"\n{}",
        golden_upstream("golden")
    ));
    let sid = open_session(&proxy.url);
    let r = post(&proxy.url, Some(&sid), &call);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = r.text().unwrap();
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(data, vec![expected.as_str()]);
}

#[test]
fn tool_list_items_keep_unknown_fields_and_big_numbers() {
    let mut p = StdioProxy::start(&golden_upstream("golden"));
    p.initialize("2025-11-25");
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let (line, _) = p.recv_response("2");
    assert!(line.contains(r#"{"name":"golden","inputSchema":{"type":"object","properties":{"big":{"type":"integer","maximum":123456789012345678901234567890}}},"x-extra":{"keep":true}}"#), "{line}");
}
