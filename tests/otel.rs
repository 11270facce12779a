//! OpenTelemetry trace export, seen from a collector: a tiny OTLP/HTTP receiver on loopback
//! records what mcp-warden sends. With the `otel` feature, a forwarded call arrives as a
//! `request` span with its agent, method, request id and upstream; without it, setting the
//! endpoint only earns a warning (the default build carries no exporter).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;

type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An OTLP/HTTP collector: records (request line, body) of every POST and answers `{}`.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
fn collector() -> (String, Received) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got: Received = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let Some((head, body)) = read_http_request(&s) else {
                continue;
            };
            let line = head.lines().next().unwrap_or_default().to_string();
            let body = String::from_utf8_lossy(&body).to_string();
            g.lock().unwrap().push((line, body));
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    (url, got)
}

#[cfg(feature = "otel")]
#[test]
fn otel_request_spans_reach_the_collector_with_agent_method_and_upstream() {
    let (url, got) = collector();
    let mut p = StdioProxy::start_env(
        &demo_upstream("demo", &[]),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "warden-otel-test"),
        ],
    );
    p.initialize("2025-11-25");
    p.send(r#"{"jsonrpc":"2.0","id":"otel-1","method":"tools/call","params":{"name":"echo","arguments":{"message":"traced"}}}"#);
    let (line, _) = p.recv_response("\"otel-1\"");
    assert!(line.contains("traced"), "{line}");
    // Spans are batched; ending the process flushes them.
    p.close_stdin();
    assert!(p.wait_exit(std::time::Duration::from_secs(10)).success());
    let got = got.lock().unwrap().clone();
    assert!(!got.is_empty(), "nothing reached the collector");
    assert!(
        got.iter().all(|(l, _)| l.starts_with("POST /v1/traces ")),
        "{got:?}"
    );
    // Compact JSON, so that the checks below do not depend on the exporter's formatting.
    let all: String = got
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<serde_json::Value>(b)
                .unwrap()
                .to_string()
        })
        .collect();
    for want in [
        r#""stringValue":"warden-otel-test""#,
        r#""name":"request""#,
        r#""key":"method","value":{"stringValue":"tools/call"}"#,
        r#""key":"upstream","value":{"stringValue":"demo"}"#,
        r#""key":"agent","value":{"stringValue":"user"}"#,
        r#""key":"id","value":{"stringValue":"\"otel-1\""}"#,
    ] {
        assert!(all.contains(want), "{want} missing from the export: {all}");
    }
    // Nothing secret in the spans: the call's arguments are not attributes.
    assert!(!all.contains("traced"), "{all}");
}

#[cfg(not(feature = "otel"))]
#[test]
fn without_the_otel_feature_an_endpoint_earns_a_warning() {
    let p = HttpProxy::start_raw(
        &demo_upstream("demo", &[]),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")],
    );
    eventually(std::time::Duration::from_secs(5), "the warning", || {
        p.logs().contains("no OpenTelemetry export")
    });
}
