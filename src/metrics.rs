//! Process-wide metrics, served on `GET /metrics` in the OpenMetrics text format by
//! `prometheus-client` (the Prometheus project's Rust client, used by linkerd2-proxy and
//! agentgateway): the registry, encoding and escaping are the crate's; what is counted is ours.
//!
//! Label values are operator-chosen names (upstreams, agents, JSON-RPC methods of forwarded
//! requests) — never arguments, tokens or tool output.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::util::lock;

/// Upper bounds (seconds) of the upstream latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The outcome labels of a forwarded request.
const OUTCOMES: [&str; 5] = ["ok", "tool_error", "error", "unavailable", "timeout"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    agent: String,
    upstream: String,
    method: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamOutcome {
    upstream: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StartLabels {
    upstream: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    agent: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByLabels {
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AskedLabels {
    upstream: String,
    form: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

type Latency = Family<UpstreamLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Open sessions per agent, as the front that owns them counts them (set by the HTTP front).
type SessionCounter = Box<dyn Fn() -> Vec<(String, u64)> + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
    refused: Family<RefusedLabels, Counter>,
    approvals: Family<OutcomeLabels, Counter>,
    sign_ins: Family<ByLabels, Counter>,
    sign_ins_asked: Family<AskedLabels, Counter>,
    starts: Family<StartLabels, Counter>,
    /// Whether an upstream's last connection came up and is still alive (the last event wins:
    /// with a child per session, one session's crash marks it down until the next start).
    up: Family<UpstreamLabels, Gauge>,
    tools: Family<UpstreamLabels, Gauge>,
    auth_failures: Counter,
    /// Set from the front when scraped.
    sessions: Gauge,
    agent_sessions: Family<AgentLabels, Gauge>,
    approvals_pending: Gauge,
    /// For `status` (not exported: `requests` has the same counts with more labels).
    answers: Family<UpstreamOutcome, Counter>,
    /// For `status`: every call refused, whoever and whyever.
    refused_total: Counter,
    /// Upstreams something was recorded for, for `status`.
    seen: Mutex<BTreeSet<String>>,
    count_sessions: Mutex<Option<SessionCounter>>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
static STARTED: LazyLock<u64> = LazyLock::new(crate::util::now_secs);

/// Records the process start time (call first thing in `main`).
pub fn mark_start() {
    LazyLock::force(&STARTED);
}

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            latency: Latency::new_with_constructor(latency_histogram),
            refused: Family::default(),
            approvals: Family::default(),
            sign_ins: Family::default(),
            sign_ins_asked: Family::default(),
            starts: Family::default(),
            up: Family::default(),
            tools: Family::default(),
            auth_failures: Counter::default(),
            sessions: Gauge::default(),
            agent_sessions: Family::default(),
            approvals_pending: Gauge::default(),
            answers: Family::default(),
            refused_total: Counter::default(),
            seen: Mutex::default(),
            count_sessions: Mutex::default(),
        };
        let mut r = Registry::default();
        r.register(
            "mcp_warden_build",
            "Version of the running mcp-warden",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let started = Gauge::<i64>::default();
        started.set(i64::try_from(*STARTED).unwrap_or(i64::MAX));
        r.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            started,
        );
        r.register(
            "mcp_warden_upstream_requests",
            "Requests forwarded to upstreams, by answer",
            m.requests.clone(),
        );
        r.register_with_unit(
            "mcp_warden_upstream_request_duration",
            "Time from forwarding a request to its answer",
            Unit::Seconds,
            m.latency.clone(),
        );
        r.register(
            "mcp_warden_calls_refused",
            "Calls mcp-warden refused itself (hidden tool, pinned argument, denied or expired approval)",
            m.refused.clone(),
        );
        r.register(
            "mcp_warden_approvals",
            "Held calls decided, by outcome",
            m.approvals.clone(),
        );
        r.register(
            "mcp_warden_upstream_sign_ins",
            "Upstream sign-ins made in a browser, by whom (operator, person), and people's links refused to someone else (refused)",
            m.sign_ins.clone(),
        );
        r.register(
            "mcp_warden_upstream_sign_ins_asked",
            "Calls that needed an upstream sign-in first, by how the agent was told (input_required, url_elicitation, tool_error, error)",
            m.sign_ins_asked.clone(),
        );
        r.register(
            "mcp_warden_upstream_starts",
            "Upstream connection attempts (start and handshake), by result",
            m.starts.clone(),
        );
        r.register(
            "mcp_warden_upstream_up",
            "Whether the upstream's last connection came up and is still alive (1) or not (0)",
            m.up.clone(),
        );
        r.register(
            "mcp_warden_upstream_tools",
            "Tools the upstream listed the last time it was asked",
            m.tools.clone(),
        );
        r.register(
            "mcp_warden_auth_failures",
            "Requests refused for a missing or wrong credential",
            m.auth_failures.clone(),
        );
        r.register(
            "mcp_warden_sessions",
            "Open HTTP sessions",
            m.sessions.clone(),
        );
        r.register(
            "mcp_warden_agent_sessions",
            "Open HTTP sessions per agent",
            m.agent_sessions.clone(),
        );
        r.register(
            "mcp_warden_approvals_pending",
            "Held calls waiting for a human",
            m.approvals_pending.clone(),
        );
        m.registry = r;
        m
    }

    pub fn request(
        &self,
        agent: &str,
        upstream: &str,
        method: &str,
        outcome: &'static str,
        took: Duration,
    ) {
        // Methods are bounded to what MCP defines; anything else is folded into one label so a
        // hostile client cannot grow the families.
        let method = if method.len() <= 40
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_')
        {
            method
        } else {
            "other"
        };
        let outcome = OUTCOMES
            .iter()
            .find(|o| **o == outcome)
            .copied()
            .unwrap_or("error");
        self.saw(upstream);
        self.requests
            .get_or_create(&RequestLabels {
                agent: agent.into(),
                upstream: upstream.into(),
                method: method.into(),
                outcome,
            })
            .inc();
        self.answers
            .get_or_create(&UpstreamOutcome {
                upstream: upstream.into(),
                outcome,
            })
            .inc();
        self.latency
            .get_or_create(&upstream_labels(upstream))
            .observe(took.as_secs_f64());
    }

    fn saw(&self, upstream: &str) {
        let mut seen = lock(&self.seen);
        if !seen.contains(upstream) {
            seen.insert(upstream.to_string());
        }
    }

    pub fn refused(&self, agent: &str, reason: &'static str) {
        self.refused_total.inc();
        self.refused
            .get_or_create(&RefusedLabels {
                agent: agent.into(),
                reason,
            })
            .inc();
    }

    pub fn upstream_start(&self, upstream: &str, result: &'static str) {
        self.saw(upstream);
        self.starts
            .get_or_create(&StartLabels {
                upstream: upstream.into(),
                result,
            })
            .inc();
        self.up
            .get_or_create(&upstream_labels(upstream))
            .set(i64::from(result == "ok"));
    }

    /// An upstream's transport ended on its own (child exited, stream closed).
    pub fn upstream_ended(&self, upstream: &str) {
        self.saw(upstream);
        self.up.get_or_create(&upstream_labels(upstream)).set(0);
    }

    /// An upstream listed `n` tools (all pages).
    pub fn tools_listed(&self, upstream: &str, n: usize) {
        self.saw(upstream);
        self.tools
            .get_or_create(&upstream_labels(upstream))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn approval(&self, outcome: &'static str) {
        self.approvals
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// An upstream sign-in made in a browser (`operator`, `person`), or a person's link refused
    /// to someone else (`refused`).
    pub fn sign_in(&self, by: &'static str) {
        self.sign_ins.get_or_create(&ByLabels { by }).inc();
    }

    /// A call that needed a sign-in to `upstream` first, and how the agent was told.
    pub fn sign_in_asked(&self, upstream: &str, form: &'static str) {
        self.sign_ins_asked
            .get_or_create(&AskedLabels {
                upstream: upstream.into(),
                form,
            })
            .inc();
    }

    /// A request refused for a missing or wrong credential.
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// Lets the front report its open sessions per agent (`status`, `/metrics`).
    pub fn count_sessions_with(&self, f: SessionCounter) {
        *lock(&self.count_sessions) = Some(f);
    }

    fn sessions_per_agent(&self) -> Vec<(String, u64)> {
        lock(&self.count_sessions)
            .as_ref()
            .map(|f| f())
            .unwrap_or_default()
    }

    /// Per-upstream totals for `mcp-warden status`.
    pub fn summary(&self) -> serde_json::Value {
        let mut ups = serde_json::Map::new();
        for u in lock(&self.seen).iter() {
            let mut e = serde_json::Map::new();
            let mut total = 0;
            for outcome in OUTCOMES {
                let n = self
                    .answers
                    .get(&UpstreamOutcome {
                        upstream: u.clone(),
                        outcome,
                    })
                    .map_or(0, |c| c.get());
                total += n;
                if outcome != "ok" {
                    e.insert(format!("requests_{outcome}"), n.into());
                }
            }
            e.insert("requests".into(), total.into());
            let start = |result| {
                self.starts
                    .get(&StartLabels {
                        upstream: u.clone(),
                        result,
                    })
                    .map_or(0, |c| c.get())
            };
            e.insert("starts".into(), start("ok").into());
            e.insert("start_failures".into(), start("failed").into());
            let label = upstream_labels(u);
            if let Some(n) = self.tools.get(&label) {
                e.insert("tools".into(), n.get().into());
            }
            if let Some(up) = self.up.get(&label) {
                e.insert("up".into(), (up.get() == 1).into());
            }
            ups.insert(u.clone(), e.into());
        }
        let refused = self.refused_total.get();
        let approvals: serde_json::Map<String, serde_json::Value> =
            ["allowed", "denied", "expired", "failed", "grant"]
                .iter()
                .filter_map(|o| {
                    let n = self.approvals.get(&OutcomeLabels { outcome: o })?.get();
                    Some(((*o).to_string(), n.into()))
                })
                .collect();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_secs": crate::util::now_secs().saturating_sub(*STARTED),
            "upstreams": ups,
            "calls_refused": refused,
            "sessions": self.sessions_per_agent().into_iter().map(|(a, n)| (a, n.into())).collect::<serde_json::Map<_, _>>(),
            "approvals": approvals,
        })
    }

    /// The exposition text, with the front's current counts (open sessions, held calls) set
    /// first.
    pub fn render(&self, sessions: u64, approvals_pending: u64) -> String {
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        self.approvals_pending
            .set(i64::try_from(approvals_pending).unwrap_or(i64::MAX));
        self.agent_sessions.clear();
        for (agent, n) in self.sessions_per_agent() {
            self.agent_sessions
                .get_or_create(&AgentLabels { agent })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

fn upstream_labels(upstream: &str) -> UpstreamLabels {
    UpstreamLabels {
        upstream: upstream.into(),
    }
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
        let m = Metrics::new();
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
        let t = m.render(2, 0);
        assert!(t.contains(
            "mcp_warden_upstream_requests_total{agent=\"a\",upstream=\"demo\",method=\"tools/call\",outcome=\"ok\"} 2"
        ), "{t}");
        assert!(t.contains("method=\"other\""), "{t}");
        assert!(t.contains("upstream=\"de\\\"mo\""), "{t}");
        assert!(t.contains(
            "mcp_warden_upstream_request_duration_seconds_bucket{le=\"0.005\",upstream=\"demo\"} 1"
        ), "{t}");
        assert!(t.contains(
            "mcp_warden_upstream_request_duration_seconds_bucket{le=\"+Inf\",upstream=\"demo\"} 2"
        ), "{t}");
        assert!(t.contains("mcp_warden_sessions 2"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
        let s = m.summary();
        assert_eq!(s["upstreams"]["demo"]["requests"], 2, "{s}");
        assert_eq!(s["upstreams"]["de\"mo"]["requests_error"], 1, "{s}");
        assert_eq!(s["calls_refused"], 1, "{s}");
    }
}
