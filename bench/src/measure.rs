//! Running the measured phases against one client and collecting the numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Client, Outcome};
use crate::procs::{self, RssSampler};

/// Counts and limits shared by every run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub warmup: u64,
    pub calls: u64,
    pub load_calls: u64,
    pub concurrency: Vec<u64>,
    /// Upper bound on one phase's duration; a phase stops at its count or this, whichever first.
    pub phase_limit: Duration,
    pub call_timeout: Duration,
    pub clk_tck: u64,
}

/// Latency percentiles of the successful calls, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(mut ns: Vec<u64>) -> Latency {
        if ns.is_empty() {
            return Latency::default();
        }
        ns.sort_unstable();
        let n = ns.len();
        // Nearest-rank percentile.
        let at = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            ns[rank.clamp(1, n) - 1] as f64 / 1000.0
        };
        let sum: u128 = ns.iter().map(|&x| u128::from(x)).sum();
        Latency {
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: ns[n - 1] as f64 / 1000.0,
            mean: sum as f64 / n as f64 / 1000.0,
        }
    }

    fn json(&self) -> Value {
        json!({"p50": r1(self.p50), "p90": r1(self.p90), "p99": r1(self.p99), "max": r1(self.max), "mean": r1(self.mean)})
    }
}

pub fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One measured phase: `calls` calls with `concurrency` in flight.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub name: String,
    pub concurrency: u64,
    pub target: u64,
    pub attempted: u64,
    pub ok: u64,
    pub errors: u64,
    pub mismatches: u64,
    pub first_problem: Option<String>,
    pub elapsed: Duration,
    pub hit_time_limit: bool,
    pub latency_us: Latency,
    /// Proxy CPU time (user + system) per attempted call, microseconds.
    pub proxy_cpu_us: Option<f64>,
    /// Upstream (demo server) CPU time per attempted call, microseconds.
    pub upstream_cpu_us: Option<f64>,
}

impl Phase {
    pub fn calls_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ok as f64 / s
        } else {
            0.0
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "concurrency": self.concurrency,
            "target_calls": self.target,
            "attempted": self.attempted,
            "ok": self.ok,
            "errors": self.errors,
            "mismatches": self.mismatches,
            "first_problem": self.first_problem,
            "elapsed_s": r3(self.elapsed.as_secs_f64()),
            "hit_time_limit": self.hit_time_limit,
            "calls_per_s": r1(self.calls_per_sec()),
            "latency_us": self.latency_us.json(),
            "proxy_cpu_us_per_call": self.proxy_cpu_us.map(r1),
            "upstream_cpu_us_per_call": self.upstream_cpu_us.map(r1),
        })
    }
}

struct WorkerResult {
    latencies_ns: Vec<u64>,
    errors: u64,
    mismatches: u64,
    first_problem: Option<String>,
}

fn cpu_per_call(before: Option<u64>, after: Option<u64>, calls: u64, clk_tck: u64) -> Option<f64> {
    let (b, a) = (before?, after?);
    (calls > 0).then(|| a.saturating_sub(b) as f64 * 1e6 / clk_tck as f64 / calls as f64)
}

/// Runs `target` calls (or until `settings.phase_limit`) with `concurrency` in flight.
pub async fn phase(
    client: &Client,
    name: &str,
    target: u64,
    concurrency: u64,
    settings: &Settings,
    proxy_pid: Option<u32>,
    upstream_pid: Option<u32>,
) -> Phase {
    let counter = Arc::new(AtomicU64::new(0));
    let proxy_cpu0 = proxy_pid.and_then(procs::cpu_ticks);
    let upstream_cpu0 = upstream_pid.and_then(procs::cpu_ticks);
    let start = Instant::now();
    let deadline = start + settings.phase_limit;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let counter = Arc::clone(&counter);
        let timeout = settings.call_timeout;
        let capacity = usize::try_from(target / concurrency.max(1) + 1).unwrap_or(0);
        workers.push(tokio::spawn(async move {
            let mut r = WorkerResult {
                latencies_ns: Vec::with_capacity(capacity),
                errors: 0,
                mismatches: 0,
                first_problem: None,
            };
            // Bounded by the shared count and by the deadline.
            while Instant::now() < deadline && counter.fetch_add(1, Ordering::Relaxed) < target {
                let t = Instant::now();
                let outcome = client.echo(timeout).await;
                let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                match outcome {
                    Outcome::Ok => r.latencies_ns.push(ns),
                    Outcome::Error(e) => {
                        r.errors += 1;
                        r.first_problem.get_or_insert(format!("error: {e}"));
                    }
                    Outcome::Mismatch(e) => {
                        r.mismatches += 1;
                        r.first_problem.get_or_insert(format!("mismatch: {e}"));
                    }
                }
            }
            r
        }));
    }
    let mut all = Vec::with_capacity(usize::try_from(target).unwrap_or(0));
    let mut p = Phase {
        name: name.to_owned(),
        concurrency,
        target,
        ..Phase::default()
    };
    for w in workers {
        match w.await {
            Ok(r) => {
                all.extend(r.latencies_ns);
                p.errors += r.errors;
                p.mismatches += r.mismatches;
                if p.first_problem.is_none() {
                    p.first_problem = r.first_problem;
                }
            }
            Err(e) => {
                p.errors += 1;
                p.first_problem.get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    p.elapsed = start.elapsed();
    p.hit_time_limit = Instant::now() >= deadline;
    p.ok = all.len() as u64;
    p.attempted = p.ok + p.errors + p.mismatches;
    p.latency_us = Latency::of(all);
    p.proxy_cpu_us = cpu_per_call(
        proxy_cpu0,
        proxy_pid.and_then(procs::cpu_ticks),
        p.attempted,
        settings.clk_tck,
    );
    p.upstream_cpu_us = cpu_per_call(
        upstream_cpu0,
        upstream_pid.and_then(procs::cpu_ticks),
        p.attempted,
        settings.clk_tck,
    );
    p
}

/// Everything measured for one configuration (direct or through the proxy).
#[derive(Debug, Default)]
pub struct Run {
    pub key: String,
    pub path: String,
    pub proxied: bool,
    pub proxy_pid: Option<u32>,
    pub upstream_pid: Option<u32>,
    pub warmup: Option<Phase>,
    pub phases: Vec<Phase>,
    pub unsolicited: u64,
    pub rss_idle_kib: Option<u64>,
    pub rss_load_max_kib: Option<u64>,
    pub vm_hwm_kib: Option<u64>,
    pub setup_error: Option<String>,
}

impl Run {
    pub fn errors(&self) -> u64 {
        let setup = u64::from(self.setup_error.is_some());
        setup
            + self
                .warmup
                .iter()
                .chain(&self.phases)
                .map(|p| p.errors)
                .sum::<u64>()
    }

    pub fn mismatches(&self) -> u64 {
        self.unsolicited
            + self
                .warmup
                .iter()
                .chain(&self.phases)
                .map(|p| p.mismatches)
                .sum::<u64>()
    }

    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn json(&self) -> Value {
        let phases: serde_json::Map<String, Value> = self
            .phases
            .iter()
            .map(|p| (p.name.clone(), p.json()))
            .collect();
        json!({
            "path": self.path,
            "proxied": self.proxied,
            "setup_error": self.setup_error,
            "errors": self.errors(),
            "mismatches": self.mismatches(),
            "unsolicited_answers": self.unsolicited,
            "warmup": self.warmup.as_ref().map(|w| json!({"calls": w.attempted, "errors": w.errors, "mismatches": w.mismatches})),
            "proxy_rss_kib": self.proxied.then(|| json!({
                "idle": self.rss_idle_kib,
                "load_max_vmrss": self.rss_load_max_kib,
                "vmhwm": self.vm_hwm_kib,
            })),
            "phases": phases,
        })
    }
}

/// Warm-up, then the sequential phase, then one throughput phase per concurrency level, with the
/// proxy's memory sampled throughout.
pub async fn measure(run: &mut Run, client: &Client, settings: &Settings) {
    let (proxy, upstream) = (run.proxy_pid, run.upstream_pid);
    if let Some(pid) = proxy {
        // Idle: after startup and the bench's own initialize, before any tool call.
        tokio::time::sleep(Duration::from_millis(300)).await;
        run.rss_idle_kib = procs::memory_kib(pid).map(|(rss, _)| rss);
    }
    let sampler = proxy.map(|pid| RssSampler::start(pid, Duration::from_millis(25)));
    let max_c = settings.concurrency.iter().copied().max().unwrap_or(1);
    eprintln!("bench:   {}: warm-up", run.key);
    let mut warm = phase(
        client,
        "warmup",
        settings.warmup,
        1,
        settings,
        proxy,
        upstream,
    )
    .await;
    // A concurrent burst too, so the HTTP pool holds its connections before the measurements.
    let burst = phase(
        client,
        "warmup",
        settings.warmup,
        max_c,
        settings,
        proxy,
        upstream,
    )
    .await;
    warm.attempted += burst.attempted;
    warm.errors += burst.errors;
    warm.mismatches += burst.mismatches;
    if warm.first_problem.is_none() {
        warm.first_problem = burst.first_problem;
    }
    run.warmup = Some(warm);
    eprintln!("bench:   {}: sequential, {} calls", run.key, settings.calls);
    let seq = phase(
        client,
        "sequential",
        settings.calls,
        1,
        settings,
        proxy,
        upstream,
    )
    .await;
    run.phases.push(seq);
    for &c in &settings.concurrency {
        eprintln!(
            "bench:   {}: {c} in flight, {} calls",
            run.key, settings.load_calls
        );
        let p = phase(
            client,
            &format!("c{c}"),
            settings.load_calls,
            c,
            settings,
            proxy,
            upstream,
        )
        .await;
        run.phases.push(p);
    }
    if let Some(s) = sampler {
        run.rss_load_max_kib = Some(s.finish().await);
    }
    if let Some(pid) = proxy {
        run.vm_hwm_kib = procs::memory_kib(pid).map(|(_, hwm)| hwm);
    }
    run.unsolicited = client.unsolicited();
}
