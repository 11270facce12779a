//! Operator commands that talk to running instances through the control API: `approvals list`,
//! `approvals watch`, `approve`, `grants list|revoke`, `status`.

use std::process::ExitCode;

use crate::approval::control;
use crate::term::safe;
use std::path::Path;

async fn call(
    dir: &Path,
    method: &str,
    params: serde_json::Value,
) -> Result<Vec<serde_json::Value>, String> {
    let answers = control::call_all(dir, method, params)
        .await
        .map_err(|e| format!("cannot reach {}: {e}", dir.display()))?;
    if answers.is_empty() {
        return Err(format!(
            "no running mcp-warden instance uses the state directory {}",
            dir.display()
        ));
    }
    let mut ok = vec![];
    let mut errors = vec![];
    for (_, r) in answers {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => errors.push(e),
        }
    }
    if ok.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(ok)
}

fn pending(results: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    results
        .into_iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .collect()
}

fn describe(a: &serde_json::Value) -> String {
    let left = a["expires_at"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(crate::util::now_secs());
    // Every field may carry an agent's or an upstream's text: each is made safe to print.
    let f = |k: &str| safe(a[k].as_str().unwrap_or_default()).into_owned();
    format!(
        "{}  {} wants {}/{}  ({}; expires in {left}s)\n    {}\n    arguments: {}",
        f("id"),
        f("agent"),
        f("upstream"),
        f("tool"),
        f("kind"),
        f("summary"),
        f("arguments"),
    )
}

pub async fn approvals_list(dir: &Path) -> ExitCode {
    match call(dir, "approvals.list", serde_json::json!({})).await {
        Ok(r) => {
            let all = pending(r);
            if all.is_empty() {
                println!("no pending approvals");
            }
            for a in &all {
                println!("{}", describe(a));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-warden: {e}");
            ExitCode::from(1)
        }
    }
}

pub async fn approve(dir: &Path, id: Option<&str>, decision: &str) -> ExitCode {
    if let Err(e) = decision.parse::<crate::approval::Decision>() {
        eprintln!("mcp-warden: {e}");
        return ExitCode::from(2);
    }
    let id = match id {
        Some(i) => i.to_string(),
        None => {
            let all = match call(dir, "approvals.list", serde_json::json!({})).await {
                Ok(r) => pending(r),
                Err(e) => {
                    eprintln!("mcp-warden: {e}");
                    return ExitCode::from(1);
                }
            };
            match all.as_slice() {
                [] => {
                    eprintln!("mcp-warden: no pending approvals");
                    return ExitCode::from(1);
                }
                [one] => one["id"].as_str().unwrap_or_default().to_string(),
                many => {
                    eprintln!(
                        "mcp-warden: {} approvals are pending; name one:",
                        many.len()
                    );
                    for a in many {
                        eprintln!(
                            "{}\n    mcp-warden approve {} {decision}",
                            describe(a),
                            safe(a["id"].as_str().unwrap_or_default())
                        );
                    }
                    return ExitCode::from(1);
                }
            }
        }
    };
    let operator = std::env::var("USER").unwrap_or_else(|_| "local".into());
    let params = serde_json::json!({"id": id, "decision": decision, "operator": operator});
    match call(dir, "approvals.decide", params).await {
        Ok(_) => {
            println!("{decision}: {}", safe(&id));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-warden: {e}");
            ExitCode::from(1)
        }
    }
}

pub async fn approvals_watch(dir: &Path) -> ExitCode {
    use http_body_util::BodyExt;
    let token = match control::secret(dir) {
        Ok(s) => control::derive_token(&s, control::PURPOSE),
        Err(e) => {
            eprintln!("mcp-warden: {e}");
            return ExitCode::from(1);
        }
    };
    let sock = control::socket_path_any(dir);
    let Some(sock) = sock else {
        eprintln!("mcp-warden: no running instance uses {}", dir.display());
        return ExitCode::from(1);
    };
    let answer = match control::exchange(&sock, hyper::Method::GET, "/events", &token, None).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcp-warden: cannot watch {}: {e}", sock.display());
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "mcp-warden: watching approvals ({}); Ctrl-C stops",
        dir.display()
    );
    let mut body = answer.response.into_body();
    let mut parser = crate::sse::Parser::new(1 << 20);
    let mut events = vec![];
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            parser.push(data, &mut events);
            for ev in events.drain(..) {
                println!("{}", safe(&ev.data));
            }
        }
    }
    ExitCode::SUCCESS
}

pub async fn status(dir: &Path, json: bool) -> ExitCode {
    let all = match call(dir, "status", serde_json::json!({})).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-warden: {e}");
            return ExitCode::from(1);
        }
    };
    for s in &all {
        if json {
            println!("{}", safe(&s.to_string()));
            continue;
        }
        println!(
            "mcp-warden {} (pid {}), up {}s; {} pending approval(s), {} grant(s), {} call(s) refused",
            s["version"].as_str().unwrap_or("?"),
            s["pid"],
            s["uptime_secs"],
            s["pending_approvals"],
            s["grants"],
            s["calls_refused"],
        );
        if let Some(replicas) = s["fleet"].as_array() {
            println!(
                "  fleet: {} replica(s), this one {}",
                replicas.len(),
                safe(s["replica"].as_str().unwrap_or("?"))
            );
            for r in replicas {
                println!(
                    "    {} on {} (pid {}, {}){}; heard from {} ms ago",
                    safe(r["id"].as_str().unwrap_or("?")),
                    safe(r["host"].as_str().unwrap_or("?")),
                    r["pid"],
                    safe(r["version"].as_str().unwrap_or("?")),
                    r["listen"]
                        .as_str()
                        .map(|l| format!(", listening on {}", safe(l)))
                        .unwrap_or_default(),
                    r["heard_ms_ago"],
                );
            }
        } else if let Some(e) = s["fleet"]["error"].as_str() {
            println!("  fleet: cannot be read ({})", safe(e));
        }
        let sessions = s["sessions"].as_object().cloned().unwrap_or_default();
        if !sessions.is_empty() {
            let list: Vec<String> = sessions
                .iter()
                .map(|(a, n)| format!("{} {n}", safe(a)))
                .collect();
            println!("  sessions: {}", list.join(", "));
        }
        let ups = s["upstreams"].as_object().cloned().unwrap_or_default();
        if ups.is_empty() {
            println!("  no upstream started yet");
        }
        for (name, u) in ups {
            let n = |k: &str| u.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let state = match u.get("up").and_then(|v| v.as_bool()) {
                Some(true) => "up",
                Some(false) => "down",
                None => "not started",
            };
            let tools = match u.get("tools") {
                Some(t) => format!("{t} tool(s)"),
                None => "tools not listed yet".into(),
            };
            println!(
                "  {}: {state}, {tools}; {} request(s) ({} error, {} tool error, {} timed out, {} unavailable); started {} time(s), {} failed start(s)",
                safe(&name),
                n("requests"),
                n("requests_error"),
                n("requests_tool_error"),
                n("requests_timeout"),
                n("requests_unavailable"),
                n("starts"),
                n("start_failures"),
            );
        }
    }
    ExitCode::SUCCESS
}

/// `90` → `1m30s`, `7260` → `2h1m`: how long, for a person.
fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

pub async fn grants_list(dir: &Path) -> ExitCode {
    match call(dir, "grants.list", serde_json::json!({})).await {
        Ok(r) => {
            let all = pending(r);
            if all.is_empty() {
                println!("no grants");
            }
            for g in &all {
                println!(
                    "{}  {} may call {}/{} without asking{}",
                    safe(g["id"].as_str().unwrap_or_default()),
                    safe(g["agent"].as_str().unwrap_or_default()),
                    safe(g["upstream"].as_str().unwrap_or_default()),
                    safe(g["tool"].as_str().unwrap_or_default()),
                    g["expires_at"]
                        .as_u64()
                        .map(|e| format!(
                            " (until {}, in {})",
                            crate::approval::audit::rfc3339(e),
                            human_duration(e.saturating_sub(crate::util::now_secs()))
                        ))
                        .unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-warden: {e}");
            ExitCode::from(1)
        }
    }
}

pub async fn grants_revoke(dir: &Path, id: &str) -> ExitCode {
    match call(dir, "grants.revoke", serde_json::json!({"id": id})).await {
        Ok(_) => {
            println!("revoked: {}", safe(id));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-warden: {e}");
            ExitCode::from(1)
        }
    }
}
