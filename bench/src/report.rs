//! The tables and the final JSON object.

use std::time::Duration;

use serde_json::{json, Value};

use crate::measure::{r1, r3, Run, Settings};

pub struct Meta {
    pub warden: String,
    pub demo: String,
    pub cpus: usize,
    pub clk_tck: u64,
    pub clk_source: String,
    pub load_before: String,
    pub load_after: String,
    pub wall: Duration,
    pub quick: bool,
    pub response_mode: Option<String>,
}

/// proxied vs direct pairs: (name, proxied run, direct run, what it tells).
const COMPARISONS: &[(&str, &str, &str, &str)] = &[
    (
        "A stdio->stdio",
        "A.proxied-stdio",
        "A.direct-stdio",
        "the proxy's added cost for a stdio client of a stdio server (apples to apples)",
    ),
    (
        "A HTTP->stdio",
        "A.proxied-http",
        "A.direct-stdio",
        "an HTTP client through the proxy vs a stdio client of the server (includes the HTTP front's cost)",
    ),
    (
        "A HTTP2026->stdio",
        "A.proxied-http-2026",
        "A.direct-stdio",
        "a 2026-07-28 (stateless) HTTP client through the proxy vs a stdio client of the server",
    ),
    (
        "A 2026 vs 2025",
        "A.proxied-http-2026",
        "A.proxied-http",
        "a stateless 2026-07-28 request vs a 2025-11-25 session request, both through the HTTP front (should be ~1)",
    ),
    (
        "A JWT vs token",
        "A.proxied-http-jwt",
        "A.proxied-http",
        "an agent signed in with an identity provider's JWT ([auth.oidc]; verified once, then remembered) vs a static bearer token (should be ~1)",
    ),
    (
        "B HTTP->HTTP",
        "B.proxied-http",
        "B.direct-http",
        "the proxy's added cost for an HTTP client of an HTTP server (apples to apples)",
    ),
];

fn table(title: &str, header: &[String], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut width = vec![0usize; cols];
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    println!("{title}");
    let line = |row: &[String]| {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 || header[i] == "first problem" {
                    format!("{c:<w$}", w = width[i])
                } else {
                    format!("{c:>w$}", w = width[i])
                }
            })
            .collect();
        println!("  {}", cells.join("  ").trim_end());
    };
    line(header);
    let total: usize = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
    println!("  {}", "-".repeat(total));
    for row in rows {
        line(row);
    }
    println!();
}

fn f0(x: f64) -> String {
    format!("{x:.0}")
}

fn f1(x: f64) -> String {
    format!("{x:.1}")
}

fn opt(x: Option<f64>, f: fn(f64) -> String) -> String {
    x.map_or("-".into(), f)
}

fn kib(x: Option<u64>) -> String {
    x.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| (*s).to_owned()).collect()
}

struct Comparison {
    name: &'static str,
    proxied: &'static str,
    direct: &'static str,
    means: &'static str,
    added_p50_us: Option<f64>,
    added_p99_us: Option<f64>,
    p50_ratio: Option<f64>,
    throughput_ratio: Vec<(String, Option<f64>)>,
    /// Proxy CPU per call, proxied / direct, per phase (`seq`, `c16`, …): only where both
    /// runs have a proxy (one proxy's cost against another's).
    cpu_ratio: Vec<(String, Option<f64>)>,
}

fn comparisons(runs: &[Run], settings: &Settings) -> Vec<Comparison> {
    let find = |k: &str| runs.iter().find(|r| r.key == k && r.setup_error.is_none());
    COMPARISONS
        .iter()
        .filter_map(|&(name, p, d, means)| {
            let (pr, dr) = (find(p)?, find(d)?);
            let (ps, ds) = (pr.phase("sequential")?, dr.phase("sequential")?);
            let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
            let throughput_ratio = settings
                .concurrency
                .iter()
                .map(|c| {
                    let n = format!("c{c}");
                    let r = pr
                        .phase(&n)
                        .zip(dr.phase(&n))
                        .and_then(|(x, y)| ratio(x.calls_per_sec(), y.calls_per_sec()));
                    (n, r)
                })
                .collect();
            let cpu_ratio = std::iter::once(("seq".to_owned(), "sequential".to_owned()))
                .chain(
                    settings
                        .concurrency
                        .iter()
                        .map(|c| (format!("c{c}"), format!("c{c}"))),
                )
                .map(|(label, phase)| {
                    let r = pr
                        .phase(&phase)
                        .and_then(|x| x.proxy_cpu_us)
                        .zip(dr.phase(&phase).and_then(|y| y.proxy_cpu_us))
                        .and_then(|(x, y)| ratio(x, y));
                    (label, r)
                })
                .collect();
            Some(Comparison {
                name,
                proxied: p,
                direct: d,
                means,
                added_p50_us: Some(ps.latency_us.p50 - ds.latency_us.p50),
                added_p99_us: Some(ps.latency_us.p99 - ds.latency_us.p99),
                p50_ratio: ratio(ps.latency_us.p50, ds.latency_us.p50),
                throughput_ratio,
                cpu_ratio,
            })
        })
        .collect()
}

pub fn print(meta: &Meta, settings: &Settings, runs: &[Run]) {
    println!("mcp-warden-bench: tools/call `echo` through mcp-warden vs direct, same run");
    println!("  warden: {}", meta.warden);
    println!("  demo:   {}", meta.demo);
    println!(
        "  machine: {} CPUs, load average {} before, {} after; CPU clock ticks {} per s ({})",
        meta.cpus, meta.load_before, meta.load_after, meta.clk_tck, meta.clk_source
    );
    println!(
        "  counts: warm-up {} (sequential, then a burst at the highest concurrency), sequential {}, {} per throughput phase; a phase stops after {} s at the latest{}",
        settings.warmup,
        settings.calls,
        settings.load_calls,
        settings.phase_limit.as_secs(),
        if meta.quick { " (--quick)" } else { "" }
    );
    println!(
        "  proxy config: response_mode {}",
        meta.response_mode
            .as_deref()
            .map_or("not set (the proxy's default)".to_owned(), |m| format!(
                "= \"{m}\""
            ))
    );
    println!("  latency is per call as the bench sees it, in microseconds; CPU is utime+stime from /proc/<pid>/stat per call");
    println!();

    let mut rows = Vec::new();
    for r in runs {
        if let Some(e) = &r.setup_error {
            rows.push(vec![r.key.clone(), format!("FAILED: {}", clip(e))]);
            continue;
        }
        if let Some(p) = r.phase("sequential") {
            let l = p.latency_us;
            rows.push(vec![
                r.key.clone(),
                p.ok.to_string(),
                f1(l.p50),
                f1(l.p90),
                f1(l.p99),
                f1(l.max),
                f0(p.calls_per_sec()),
            ]);
        }
    }
    table(
        "Sequential latency (1 call in flight), microseconds",
        &header(&["run", "calls ok", "p50", "p90", "p99", "max", "calls/s"]),
        &rows,
    );

    let mut head = header(&["run"]);
    for c in &settings.concurrency {
        head.extend([
            format!("c{c} calls/s"),
            format!("c{c} p50"),
            format!("c{c} p99"),
        ]);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter(|r| r.setup_error.is_none())
        .map(|r| {
            let mut row = vec![r.key.clone()];
            for c in &settings.concurrency {
                match r.phase(&format!("c{c}")) {
                    Some(p) => row.extend([
                        format!(
                            "{}{}",
                            f0(p.calls_per_sec()),
                            if p.hit_time_limit { "*" } else { "" }
                        ),
                        f1(p.latency_us.p50),
                        f1(p.latency_us.p99),
                    ]),
                    None => row.extend(["-".into(), "-".into(), "-".into()]),
                }
            }
            row
        })
        .collect();
    table(
        "Throughput (N calls in flight: concurrent HTTP requests on a keep-alive pool, or pipelined stdio ids); latency in microseconds (* = stopped by the time limit)",
        &head,
        &rows,
    );

    let mut head = header(&["run"]);
    let phase_names: Vec<String> = std::iter::once("sequential".to_owned())
        .chain(settings.concurrency.iter().map(|c| format!("c{c}")))
        .collect();
    for n in &phase_names {
        head.push(format!("proxy {}", short(n)));
    }
    for n in &phase_names {
        head.push(format!("upstream {}", short(n)));
    }
    head.extend(header(&["proxy RSS idle", "RSS load max", "VmHWM"]));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter(|r| r.setup_error.is_none())
        .map(|r| {
            let mut row = vec![r.key.clone()];
            for n in &phase_names {
                row.push(opt(r.phase(n).and_then(|p| p.proxy_cpu_us), f1));
            }
            for n in &phase_names {
                row.push(opt(r.phase(n).and_then(|p| p.upstream_cpu_us), f1));
            }
            row.extend([
                kib(r.rss_idle_kib),
                kib(r.rss_load_max_kib),
                kib(r.vm_hwm_kib),
            ]);
            row
        })
        .collect();
    table(
        &format!(
            "CPU time per call (microseconds; resolution one clock tick = {} us over the phase) and proxy memory",
            1_000_000 / meta.clk_tck.max(1)
        ),
        &head,
        &rows,
    );

    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let first = r
                .warmup
                .iter()
                .chain(&r.phases)
                .find_map(|p| p.first_problem.clone())
                .or_else(|| r.setup_error.clone())
                .unwrap_or_default();
            vec![
                r.key.clone(),
                r.errors().to_string(),
                r.mismatches().to_string(),
                r.unsolicited.to_string(),
                clip(&first),
            ]
        })
        .collect();
    table(
        "Correctness (every call: answer id and echoed text `m-<id>` checked; must all be 0)",
        &header(&[
            "run",
            "errors",
            "mismatches",
            "unsolicited",
            "first problem",
        ]),
        &rows,
    );

    let comps = comparisons(runs, settings);
    let mut head = header(&["comparison", "added p50 us", "added p99 us", "p50 ratio"]);
    for c in &settings.concurrency {
        head.push(format!("c{c} throughput ratio"));
    }
    head.push("proxy CPU ratio seq".to_owned());
    for c in &settings.concurrency {
        head.push(format!("c{c}"));
    }
    let rows: Vec<Vec<String>> = comps
        .iter()
        .map(|c| {
            let mut row = vec![
                c.name.to_owned(),
                opt(c.added_p50_us, f1),
                opt(c.added_p99_us, f1),
                opt(c.p50_ratio, |x| format!("{x:.2}")),
            ];
            for (_, r) in c.throughput_ratio.iter().chain(&c.cpu_ratio) {
                row.push(opt(*r, |x| format!("{x:.3}")));
            }
            row
        })
        .collect();
    table(
        "Proxied vs direct (added = proxied - direct; ratio = proxied / direct)",
        &head,
        &rows,
    );
    for c in &comps {
        println!("  {}: {} vs {}: {}", c.name, c.proxied, c.direct, c.means);
    }
    println!();

    let json = json!({
        "bench": "mcp-warden-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "binaries": {"warden": meta.warden, "demo": meta.demo},
        "machine": {
            "cpus": meta.cpus,
            "clk_tck": meta.clk_tck,
            "clk_tck_source": meta.clk_source,
            "loadavg_before": meta.load_before,
            "loadavg_after": meta.load_after,
        },
        "settings": {
            "quick": meta.quick,
            "proxy_response_mode": meta.response_mode,
            "warmup": settings.warmup,
            "sequential_calls": settings.calls,
            "load_calls": settings.load_calls,
            "concurrency": settings.concurrency,
            "max_phase_s": settings.phase_limit.as_secs(),
            "call_timeout_s": settings.call_timeout.as_secs(),
        },
        "wall_s": r3(meta.wall.as_secs_f64()),
        "units": {"latency": "microseconds", "cpu": "microseconds of user+system CPU per call", "rss": "KiB"},
        "runs": runs.iter().map(|r| (r.key.clone(), r.json())).collect::<serde_json::Map<String, Value>>(),
        "comparisons": comps.iter().map(|c| (c.name.to_owned(), json!({
            "proxied": c.proxied,
            "direct": c.direct,
            "added_p50_us": c.added_p50_us.map(r1),
            "added_p99_us": c.added_p99_us.map(r1),
            "p50_ratio": c.p50_ratio.map(r3),
            "throughput_ratio": c.throughput_ratio.iter().map(|(n, r)| (n.clone(), json!(r.map(r3)))).collect::<serde_json::Map<String, Value>>(),
            "proxy_cpu_ratio": c.cpu_ratio.iter().map(|(n, r)| (n.clone(), json!(r.map(r3)))).collect::<serde_json::Map<String, Value>>(),
        }))).collect::<serde_json::Map<String, Value>>(),
        "errors": runs.iter().map(Run::errors).sum::<u64>(),
        "mismatches": runs.iter().map(Run::mismatches).sum::<u64>(),
    });
    match serde_json::to_string_pretty(&json) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("bench: cannot print the JSON: {e}"),
    }
}

/// At most 160 characters, for table cells (the JSON has the whole text).
fn clip(s: &str) -> String {
    match s.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn short(phase: &str) -> &str {
    if phase == "sequential" {
        "seq"
    } else {
        phase
    }
}
