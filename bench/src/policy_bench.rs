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

fn measure(label: &str, cfg_text: &str, items: &[Bytes], pinned: bool) -> serde_json::Value {
    let cfg = match Config::parse(cfg_text, &|_| None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config: {e}");
            std::process::exit(1);
        }
    };
    let agent = cfg.agents.first().map(|a| a.as_ref());
    // Tool-definition pinning is on whenever mcp-warden has a usable state directory (the
    // default): a scratch one here, removed at the end.
    let state =
        std::env::temp_dir().join(format!("mcp-warden-policy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let pins = pinned.then(|| mcp_warden::pins::PinStore::open(state.clone()));
    if pinned {
        let _ = std::fs::create_dir_all(&state);
    }
    let ctx = PolicyCtx {
        agent,
        pins: pins.as_ref(),
    };
    let up = std::sync::Arc::new(cfg.upstreams[0].clone());
    // What the proxy hands to `merge` after fetching the upstream's pages (not timed: the
    // fetch is not part of the build).
    let fetched = || {
        vec![Fetched {
            upstream: 0,
            cfg: up.clone(),
            namespace: Some("big".into()),
            items: items.to_vec(),
            signed_out: false,
        }]
    };
    let input = fetched();
    let first = Instant::now();
    let list = merge(ListKind::Tools, input, &ctx);
    let first_us = first.elapsed().as_secs_f64() * 1e6;
    let shown = list.entries.len();
    drop(list);
    // Untimed builds first, so that the allocator and caches are in the state later builds see.
    for _ in 0..WARMUP {
        std::hint::black_box(merge(ListKind::Tools, fetched(), &ctx));
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let input = fetched();
        let t = Instant::now();
        let list = merge(ListKind::Tools, input, &ctx);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        // Dropping the list (and the input with it) is not timed either: the proxy keeps the
        // list cached until the next change.
        std::hint::black_box(list);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let _ = std::fs::remove_dir_all(&state);
    println!("  {label}: {TOOLS} upstream tools -> {shown} shown; p50 {:.0} us, p99 {:.0} us over {RUNS} builds (the first: {first_us:.0} us)", pct(0.5), pct(0.99));
    serde_json::json!({"case": label, "tools": TOOLS, "shown": shown, "runs": RUNS, "p50_us": pct(0.5), "p99_us": pct(0.99), "first_us": first_us})
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
        ("filter + namespace + rename (allow glob, 2 deny globs)", base.to_string(), false),
        ("same + anthropic profile (200 union schemas merged)", profile_only.clone(), false),
        ("same + 100 rewrites (pin, hide, description)", rewrites_only.clone(), false),
        (
            "same + anthropic profile (200 union schemas merged) + 100 rewrites (pin, hide, description)",
            full.clone(),
            false,
        ),
        // What a deployment with a state directory (the default) does on every build.
        ("filter + namespace + rename, tool definitions pinned", base.to_string(), true),
        ("rewrites, tool definitions pinned", rewrites_only, true),
        ("profile + rewrites, tool definitions pinned", full, true),
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
        .map(|(_, (label, cfg, pinned))| measure(label, cfg, &items, *pinned))
        .collect();
    println!("{}", serde_json::json!({ "results": results }));
}
