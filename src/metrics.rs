//! Process-wide counters in the Prometheus text exposition format (version 0.0.4), served on
//! `GET /metrics`. Hand-written rather than a metrics crate: a handful of counters and one
//! histogram family do not justify a registry, and the text format is small and stable.
//!
//! Label values are operator-chosen names (upstreams, agents, JSON-RPC methods of forwarded
//! requests) — never arguments, tokens or tool output.

use crate::util::lock;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the upstream latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The outcome labels of a forwarded request, in the order of [`Calls`].
const OUTCOMES: [&str; 5] = ["ok", "tool_error", "error", "unavailable", "timeout"];

/// Forwarded requests of one (agent, method), by outcome.
type Calls = [u64; OUTCOMES.len()];

/// Everything recorded for one upstream, so that a forwarded request takes one lock and, once
/// its labels have been seen, allocates nothing.
#[derive(Default)]
struct UpstreamStats {
    latency: Histogram,
    /// agent → method → counts by outcome.
    calls: BTreeMap<String, BTreeMap<String, Calls>>,
}

/// `map[key]`, inserted with its default the first time (the key is copied only then).
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
        .unwrap_or_else(|| unreachable!("inserted above"))
}

#[derive(Default)]
pub struct Metrics {
    /// upstream → its latency and request counts.
    upstreams: Mutex<BTreeMap<String, UpstreamStats>>,
    /// (agent, reason) → calls refused by mcp-warden itself.
    refused: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// outcome → approvals decided.
    approvals: Mutex<BTreeMap<&'static str, u64>>,
    sessions: Mutex<Option<SessionCounter>>,
    /// (upstream, result) → connection attempts (child spawned + handshake, HTTP session).
    starts: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// upstream → whether its last connection came up and is still alive (the last event wins:
    /// with a child per session, one session's crash marks it down until the next start).
    up: Mutex<BTreeMap<String, bool>>,
    /// upstream → how many tools it listed the last time it was asked.
    tools: Mutex<BTreeMap<String, u64>>,
}

/// Open sessions per agent, as the front that owns them counts them (set by the HTTP front).
type SessionCounter = Box<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);
static STARTED: LazyLock<u64> = LazyLock::new(crate::util::now_secs);

/// Records the process start time (call first thing in `main`).
pub fn mark_start() {
    LazyLock::force(&STARTED);
}

/// The outcome label of a forwarded request's answer.
pub fn outcome(reply: &crate::jsonrpc::Message) -> &'static str {
    #[derive(serde::Deserialize)]
    struct ToolResult {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    if reply.error().is_some() {
        "error"
    } else if reply
        .result()
        // Only a result that mentions `isError` is parsed (once per call, on the hot path).
        .filter(|r| r.contains("\"isError\""))
        .and_then(|r| serde_json::from_str::<ToolResult>(r).ok())
        .is_some_and(|r| r.is_error)
    {
        "tool_error"
    } else {
        "ok"
    }
}

impl Metrics {
    pub fn request(
        &self,
        agent: &str,
        upstream: &str,
        method: &str,
        outcome: &'static str,
        took: Duration,
    ) {
        // Methods are bounded to what MCP defines; anything else is folded into one label so a
        // hostile client cannot grow the map.
        let method = if method.len() <= 40
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_')
        {
            method
        } else {
            "other"
        };
        let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(2);
        let mut ups = lock(&self.upstreams);
        let u = slot(&mut ups, upstream);
        slot(slot(&mut u.calls, agent), method)[o] += 1;
        let h = &mut u.latency;
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    pub fn refused(&self, agent: &str, reason: &'static str) {
        *lock(&self.refused)
            .entry((agent.to_string(), reason))
            .or_default() += 1;
    }

    pub fn upstream_start(&self, upstream: &str, result: &'static str) {
        *lock(&self.starts)
            .entry((upstream.to_string(), result))
            .or_default() += 1;
        lock(&self.up).insert(upstream.to_string(), result == "ok");
    }

    /// An upstream's transport ended on its own (child exited, stream closed).
    pub fn upstream_ended(&self, upstream: &str) {
        lock(&self.up).insert(upstream.to_string(), false);
    }

    /// An upstream listed `n` tools (all pages).
    pub fn tools_listed(&self, upstream: &str, n: usize) {
        lock(&self.tools).insert(upstream.to_string(), n as u64);
    }

    pub fn approval(&self, outcome: &'static str) {
        *lock(&self.approvals).entry(outcome).or_default() += 1;
    }

    /// Lets the front report its open sessions per agent (`status`, `/metrics`).
    pub fn count_sessions_with(&self, f: SessionCounter) {
        *lock(&self.sessions) = Some(f);
    }

    fn sessions_per_agent(&self) -> BTreeMap<String, u64> {
        lock(&self.sessions)
            .as_ref()
            .map(|f| f())
            .unwrap_or_default()
    }

    /// Per-upstream totals for `mcp-warden status`.
    pub fn summary(&self) -> serde_json::Value {
        let mut up: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
        let mut add = |u: &str, k: &str, n: u64| {
            let e = up.entry(u.to_string()).or_default();
            let cur = e.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            e.insert(k.to_string(), (cur + n).into());
        };
        for (u, stats) in lock(&self.upstreams).iter() {
            for calls in stats.calls.values().flat_map(|m| m.values()) {
                for (out, n) in OUTCOMES.iter().zip(calls) {
                    add(u, "requests", *n);
                    if *out != "ok" {
                        add(u, &format!("requests_{out}"), *n);
                    }
                }
            }
        }
        for ((u, r), n) in lock(&self.starts).iter() {
            add(
                u,
                if *r == "ok" {
                    "starts"
                } else {
                    "start_failures"
                },
                *n,
            );
        }
        for (u, n) in lock(&self.tools).iter() {
            add(u, "tools", *n);
        }
        for (u, is_up) in lock(&self.up).iter() {
            up.entry(u.clone())
                .or_default()
                .insert("up".into(), (*is_up).into());
        }
        let refused: u64 = lock(&self.refused).values().sum();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_secs": crate::util::now_secs().saturating_sub(*STARTED),
            "upstreams": up,
            "calls_refused": refused,
            "sessions": self.sessions_per_agent(),
            "approvals": *lock(&self.approvals),
        })
    }

    /// The exposition text, with the gauges the caller knows about appended.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP mcp_warden_build_info Version of the running mcp-warden.\n# TYPE mcp_warden_build_info gauge\nmcp_warden_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            o,
            "# HELP process_start_time_seconds Start time of the process since the Unix epoch.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
            *STARTED
        );
        let _ = writeln!(o, "# HELP mcp_warden_upstream_requests_total Requests forwarded to upstreams, by answer.\n# TYPE mcp_warden_upstream_requests_total counter");
        let ups = lock(&self.upstreams);
        for (u, stats) in ups.iter() {
            for (a, methods) in &stats.calls {
                for (m, calls) in methods {
                    for (out, n) in OUTCOMES.iter().zip(calls).filter(|(_, n)| **n > 0) {
                        let _ = writeln!(
                            o,
                            "mcp_warden_upstream_requests_total{{agent=\"{}\",upstream=\"{}\",method=\"{}\",outcome=\"{out}\"}} {n}",
                            esc(a),
                            esc(u),
                            esc(m)
                        );
                    }
                }
            }
        }
        let _ = writeln!(o, "# HELP mcp_warden_upstream_request_duration_seconds Time from forwarding a request to its answer.\n# TYPE mcp_warden_upstream_request_duration_seconds histogram");
        for (u, stats) in ups.iter() {
            let h = &stats.latency;
            let u = esc(u);
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    o,
                    "mcp_warden_upstream_request_duration_seconds_bucket{{upstream=\"{u}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                o,
                "mcp_warden_upstream_request_duration_seconds_bucket{{upstream=\"{u}\",le=\"+Inf\"}} {}\nmcp_warden_upstream_request_duration_seconds_sum{{upstream=\"{u}\"}} {}\nmcp_warden_upstream_request_duration_seconds_count{{upstream=\"{u}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        drop(ups);
        let _ = writeln!(o, "# HELP mcp_warden_calls_refused_total Calls mcp-warden refused itself (hidden tool, pinned argument, denied or expired approval).\n# TYPE mcp_warden_calls_refused_total counter");
        for ((a, r), n) in lock(&self.refused).iter() {
            let _ = writeln!(
                o,
                "mcp_warden_calls_refused_total{{agent=\"{}\",reason=\"{r}\"}} {n}",
                esc(a)
            );
        }
        let _ = writeln!(o, "# HELP mcp_warden_approvals_total Held calls decided, by outcome.\n# TYPE mcp_warden_approvals_total counter");
        for (out, n) in lock(&self.approvals).iter() {
            let _ = writeln!(o, "mcp_warden_approvals_total{{outcome=\"{out}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP mcp_warden_upstream_starts_total Upstream connection attempts (start and handshake), by result.\n# TYPE mcp_warden_upstream_starts_total counter");
        for ((u, r), n) in lock(&self.starts).iter() {
            let _ = writeln!(
                o,
                "mcp_warden_upstream_starts_total{{upstream=\"{}\",result=\"{r}\"}} {n}",
                esc(u)
            );
        }
        let _ = writeln!(o, "# HELP mcp_warden_upstream_up Whether the upstream's last connection came up and is still alive (1) or not (0).\n# TYPE mcp_warden_upstream_up gauge");
        for (u, is_up) in lock(&self.up).iter() {
            let _ = writeln!(
                o,
                "mcp_warden_upstream_up{{upstream=\"{}\"}} {}",
                esc(u),
                u8::from(*is_up)
            );
        }
        let _ = writeln!(o, "# HELP mcp_warden_upstream_tools Tools the upstream listed the last time it was asked.\n# TYPE mcp_warden_upstream_tools gauge");
        for (u, n) in lock(&self.tools).iter() {
            let _ = writeln!(
                o,
                "mcp_warden_upstream_tools{{upstream=\"{}\"}} {n}",
                esc(u)
            );
        }
        let _ = writeln!(o, "# HELP mcp_warden_agent_sessions Open HTTP sessions per agent.\n# TYPE mcp_warden_agent_sessions gauge");
        for (a, n) in self.sessions_per_agent() {
            let _ = writeln!(o, "mcp_warden_agent_sessions{{agent=\"{}\"}} {n}", esc(&a));
        }
        for (name, help, v) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        o
    }
}

/// Escapes a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels() {
        let m = |t: &'static str| crate::jsonrpc::Message::parse(bytes::Bytes::from(t)).unwrap();
        assert_eq!(
            outcome(&m(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#)),
            "ok"
        );
        assert_eq!(
            outcome(&m(
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#
            )),
            "tool_error"
        );
        assert_eq!(
            outcome(&m(r#"{"jsonrpc":"2.0","id":1,"result":{"isError":false}}"#)),
            "ok"
        );
        assert_eq!(
            outcome(&m(
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#
            )),
            "error"
        );
    }

    #[test]
    fn renders_valid_exposition_lines() {
        let m = Metrics::default();
        m.request("a", "demo", "tools/call", "ok", Duration::from_millis(3));
        m.request("a", "demo", "tools/call", "ok", Duration::from_millis(300));
        m.request(
            "a",
            "de\"mo",
            "evil method{}",
            "error",
            Duration::from_millis(1),
        );
        m.refused("a", "hidden_tool");
        let t = m.render(&[("mcp_warden_sessions", "Open sessions.", 2)]);
        assert!(t.contains(
            "mcp_warden_upstream_requests_total{agent=\"a\",upstream=\"demo\",method=\"tools/call\",outcome=\"ok\"} 2"
        ));
        assert!(t.contains("method=\"other\""));
        assert!(t.contains("upstream=\"de\\\"mo\""));
        assert!(t.contains(
            "mcp_warden_upstream_request_duration_seconds_bucket{upstream=\"demo\",le=\"0.005\"} 1"
        ));
        assert!(t.contains(
            "mcp_warden_upstream_request_duration_seconds_bucket{upstream=\"demo\",le=\"+Inf\"} 2"
        ));
        assert!(t.contains("mcp_warden_sessions 2"));
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
