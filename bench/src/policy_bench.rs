//! `mcp-warden-policy-bench`: how long building one agent's tool list takes when an upstream
//! lists 1,000 tools — filtering (allow/deny globs), renaming and rewriting (pins, hidden
//! parameters, description overrides) and a provider schema profile — i.e. the work mcp-warden
//! does on a `tools/list` cache miss. Prints median and p99 over repeated builds.
//!
//! Run: `cargo build --release -p mcp-warden-bench && target/release/mcp-warden-policy-bench`

use std::time::Instant;

use bytes::Bytes;
use mcp_warden::config::Config;
use mcp_warden::session::catalog::{merge, Fetched, ListKind, PolicyCtx};

const TOOLS: usize = 1000;
const RUNS: usize = 300;
const WARMUP: usize = 50;

fn tool(i: usize) -> serde_json::Value {
    // A mix of plain, union-typed (anyOf) and annotated tools, like real servers.
    let schema = if i % 5 == 0 {
        serde_json::json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "anyOf": [
                {"type": "object", "properties": {"path": {"type": "string"}, "mode": {"type": "string"}}, "required": ["path"]},
                {"type": "object", "properties": {"url": {"type": "string"}, "mode": {"type": "string"}}, "required": ["url"]}
            ]
        })
    } else {
        serde_json::json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Where."},
                "mode": {"type": "string", "enum": ["r", "w"]},
                "limit": {"type": "integer", "minimum": 0},
                "nested": {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}}
            },
            "required": ["path"]
        })
    };
    serde_json::json!({
        "name": format!("tool_{i:04}.{}", if i % 3 == 0 { "read" } else { "write" }),
        "description": format!("Tool number {i}: does something useful with a path."),
        "inputSchema": schema,
        "annotations": {"readOnlyHint": i % 3 == 0}
    })
}

fn measure(label: &str, cfg_text: &str, items: &[Bytes]) -> serde_json::Value {
    let cfg = match Config::parse(cfg_text, &|_| None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config: {e}");
            std::process::exit(1);
        }
    };
    let agent = cfg.agents.first().map(|a| a.as_ref());
    let ctx = PolicyCtx { agent, pins: None };
    let up = std::sync::Arc::new(cfg.upstreams[0].clone());
    let build = || {
        let fetched = vec![Fetched {
            upstream: 0,
            cfg: up.clone(),
            namespace: Some("big".into()),
            items: items.to_vec(),
        }];
        merge(ListKind::Tools, fetched, &ctx)
    };
    let shown = build().entries.len();
    // Untimed builds first, so that the allocator and caches are in the state later builds see.
    for _ in 0..WARMUP {
        std::hint::black_box(build());
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let list = build();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(list);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!("  {label}: {TOOLS} upstream tools -> {shown} shown; p50 {:.0} us, p99 {:.0} us over {RUNS} builds", pct(0.5), pct(0.99));
    serde_json::json!({"case": label, "tools": TOOLS, "shown": shown, "runs": RUNS, "p50_us": pct(0.5), "p99_us": pct(0.99)})
}

fn main() {
    let items: Vec<Bytes> = (0..TOOLS)
        .map(|i| Bytes::from(tool(i).to_string()))
        .collect();
    let base = "[upstreams.big]\ncommand = \"x\"\n[upstreams.other]\ncommand = \"y\"\n\n[agents.a]\ntoken_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\ntools.allow = [\"big__*\"]\ntools.deny = [\"*_0666_*\", \"big__tool_09*\"]\n";
    let profile_only = format!("{base}schema = \"anthropic\"\n");
    let mut rewrites = String::new();
    for i in (0..TOOLS).step_by(10) {
        let name = format!(
            "big__tool_{i:04}_{}",
            if i % 3 == 0 { "read" } else { "write" }
        );
        rewrites.push_str(&format!(
            "[agents.a.tools.rewrite.{name}]\ndescription = \"Rewritten.\"\npin = {{ mode = \"r\" }}\nhide = [\"limit\"]\n"
        ));
    }
    let rewrites_only = format!("{base}{rewrites}");
    let full = format!("{profile_only}{rewrites}");
    let cases = [
        ("filter + namespace + rename (allow glob, 2 deny globs)", base.to_string()),
        ("same + anthropic profile (200 union schemas merged)", profile_only),
        ("same + 100 rewrites (pin, hide, description)", rewrites_only),
        (
            "same + anthropic profile (200 union schemas merged) + 100 rewrites (pin, hide, description)",
            full,
        ),
    ];
    // `mcp-warden-policy-bench 2 4` runs only those cases (numbered from 1), e.g. under a profiler.
    let only: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    println!("mcp-warden-policy-bench: building one agent's tools/list (the work of a cache miss)");
    let results: Vec<serde_json::Value> = cases
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_empty() || only.contains(&(i + 1)))
        .map(|(_, (label, cfg))| measure(label, cfg, &items))
        .collect();
    println!("{}", serde_json::json!({ "results": results }));
}
