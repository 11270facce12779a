//! `mcp-warden import FILE`: turns the `mcpServers` JSON that MCP clients use (Claude Desktop's
//! `claude_desktop_config.json`, Cursor's `mcp.json`, Claude Code's `.mcp.json`) or OpenClaw's
//! JSON5 config (`mcp.servers`, and its agents) into an mcp-warden config, and shows the
//! client-side config that points the client at mcp-warden.
//!
//! Values that look secret (env or header names with KEY, TOKEN, SECRET, PASSWORD, AUTH) are
//! not copied into the config: they become `${VAR}` references, and the variables to set are
//! listed.

use std::collections::BTreeSet;

use serde_json::Value;

pub struct Imported {
    pub toml: String,
    /// Environment variables the config now references, with the value found in the file.
    pub secrets: Vec<(String, String)>,
    /// What to put in the client's config instead: (how to use it, the snippet).
    pub client: Vec<(String, String)>,
}

fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "AUTH",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// An upstream name mcp-warden accepts: A-Z a-z 0-9 _ -, at most 32, no `__`.
fn upstream_name(raw: &str, taken: &mut BTreeSet<String>) -> String {
    let mut n: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while n.contains("__") {
        n = n.replace("__", "_");
    }
    let n = n.trim_matches('_').to_string();
    let mut n = if n.is_empty() {
        "server".to_string()
    } else {
        n
    };
    n.truncate(28);
    let base = n.clone();
    let mut i = 2;
    while !taken.insert(n.clone()) {
        n = format!("{base}-{i}");
        i += 1;
    }
    n
}

fn env_var_for(upstream: &str, key: &str) -> String {
    let shout = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    // GITHUB_TOKEN on upstream `github` stays GITHUB_TOKEN rather than GITHUB_GITHUB_TOKEN.
    let joined = if shout(key).starts_with(&format!("{}_", shout(upstream))) {
        key.to_string()
    } else {
        format!("{upstream}_{key}")
    };
    let mut v: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if v.starts_with(|c: char| c.is_ascii_digit()) {
        v.insert(0, '_');
    }
    v
}

fn toml_str(s: &str) -> String {
    // A TOML basic string is a JSON string minus a few escapes JSON doesn't use; JSON's
    // escaping is valid TOML for every character.
    Value::String(s.to_string()).to_string()
}

fn table(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// Env or header pairs as config values: secret-looking ones (by name, or a `Bearer` value)
/// become `${VAR}` references recorded in `secrets`; references already there are kept.
fn secret_pairs(
    pairs: Option<&serde_json::Map<String, Value>>,
    name: &str,
    secrets: &mut Vec<(String, String)>,
) -> Vec<(String, String)> {
    let Some(m) = pairs else { return vec![] };
    m.iter()
        .filter_map(|(k, v)| {
            let val = v.as_str()?.to_string();
            if val.contains("${") {
                // Already an environment reference (Claude Code and Cursor expand `${VAR}` too):
                // keep it, mcp-warden expands it the same way.
                Some((k.clone(), val))
            } else if looks_secret(k) || val.contains("Bearer ") {
                let var = env_var_for(name, k);
                let reference = if let Some(tok) = val.strip_prefix("Bearer ") {
                    secrets.push((var.clone(), tok.to_string()));
                    format!("Bearer ${{{var}}}")
                } else {
                    secrets.push((var.clone(), val));
                    format!("${{{var}}}")
                };
                Some((k.clone(), reference))
            } else {
                Some((k.clone(), val.replace('$', "$$")))
            }
        })
        .collect()
}

/// `args` as config values (`$` escaped), with secret option values (`--api-key=…`,
/// `--token …`) replaced by `${VAR}` references and recorded in `secrets`.
fn secret_args(args: &[&str], upstream: &str, secrets: &mut Vec<(String, String)>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut value_of: Option<&str> = None;
    for a in args {
        if let Some(opt) = value_of.take() {
            if !a.starts_with('-') && !a.contains("${") {
                let var = env_var_for(upstream, opt.trim_start_matches('-'));
                secrets.push((var.clone(), a.to_string()));
                out.push(format!("${{{var}}}"));
                continue;
            }
        }
        match a.split_once('=') {
            Some((opt, val))
                if opt.starts_with('-')
                    && looks_secret(opt)
                    && !val.is_empty()
                    && !val.contains("${") =>
            {
                let var = env_var_for(upstream, opt.trim_start_matches('-'));
                secrets.push((var.clone(), val.to_string()));
                out.push(format!("{opt}=${{{var}}}"));
            }
            None if a.starts_with('-') && looks_secret(a) => {
                value_of = Some(a);
                out.push(a.to_string());
            }
            _ if a.contains("${") => out.push(a.to_string()),
            _ => out.push(a.replace('$', "$$")),
        }
    }
    out
}

/// `url` with the values of secret-looking query parameters (`?token=…`, `api_key=…`) replaced
/// by `${VAR}` references and recorded in `secrets`.
fn secret_query(url: &str, upstream: &str, secrets: &mut Vec<(String, String)>) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.replace('$', "$$");
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if looks_secret(k) && !v.is_empty() && !v.contains("${") => {
                let var = env_var_for(upstream, k);
                secrets.push((var.clone(), v.to_string()));
                format!("{k}=${{{var}}}")
            }
            _ => pair.replace('$', "$$"),
        })
        .collect();
    let mut out = format!("{}?{}", base.replace('$', "$$"), pairs.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(&f.replace('$', "$$"));
    }
    out
}

pub fn import(json: &str, source: &str) -> Result<Imported, String> {
    // JSON5 is a superset of JSON: one parser reads both.
    let v: Value = json5::from_str(json).map_err(|e| format!("neither JSON nor JSON5: {e}"))?;
    // OpenClaw keeps its servers under `mcp.servers` and its agents under `agents.entries`.
    let openclaw = v.get("mcp").and_then(|m| m.get("servers"));
    let servers = v
        .get("mcpServers")
        .or_else(|| v.get("servers"))
        .or(openclaw)
        .and_then(Value::as_object)
        .ok_or("no `mcpServers` (or OpenClaw `mcp.servers`) object in the file")?;
    let mut out = format!("# Imported by `mcp-warden import` from {source}.\n# Check it with `mcp-warden check`, see each agent's view with `mcp-warden tools`.\n");
    let mut taken = BTreeSet::new();
    let mut secrets = vec![];
    for (raw_name, s) in servers {
        let name = upstream_name(raw_name, &mut taken);
        out.push_str(&format!("\n[upstreams.{name}]\n"));
        if name != *raw_name {
            out.push_str(&format!("# was {}\n", toml_str(raw_name)));
        }
        // `type` (Claude Code, Cursor, VS Code) or `transport` (OpenClaw).
        let kind = s
            .get("type")
            .or_else(|| s.get("transport"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Claude Code, Cursor and VS Code mark a server they keep but do not start.
        let disabled = s.get("disabled").and_then(Value::as_bool) == Some(true)
            || s.get("enabled").and_then(Value::as_bool) == Some(false);
        if disabled {
            out.push_str("enabled = false\n");
        }
        if let Some(url) = s.get("url").and_then(Value::as_str) {
            let url = secret_query(url, &name, &mut secrets);
            out.push_str(&format!("url = {}\n", toml_str(&url)));
            if kind == "sse" {
                out.push_str("transport = \"sse\"\n");
            } else if kind == "http" || kind == "streamable-http" {
                out.push_str("transport = \"streamable-http\"\n");
            }
            let headers = secret_pairs(
                s.get("headers").and_then(Value::as_object),
                &name,
                &mut secrets,
            );
            if !headers.is_empty() {
                out.push_str(&format!("headers = {}\n", table(&headers)));
            }
        } else if let Some(cmd) = s.get("command").and_then(Value::as_str) {
            out.push_str(&format!(
                "command = {}\n",
                toml_str(&cmd.replace('$', "$$"))
            ));
            let raw_args: Vec<&str> = s
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let args: Vec<String> = secret_args(&raw_args, &name, &mut secrets)
                .iter()
                .map(|x| toml_str(x))
                .collect();
            if !args.is_empty() {
                out.push_str(&format!("args = [{}]\n", args.join(", ")));
            }
            let env = secret_pairs(s.get("env").and_then(Value::as_object), &name, &mut secrets);
            if !env.is_empty() {
                out.push_str(&format!("env = {}\n", table(&env)));
            }
            if let Some(cwd) = s.get("cwd").and_then(Value::as_str) {
                out.push_str(&format!("cwd = {}\n", toml_str(cwd)));
            }
        } else {
            return Err(format!(
                "server `{raw_name}` has neither `command` nor `url`"
            ));
        }
    }
    let client = match openclaw {
        Some(_) => openclaw_client(&v, &mut out),
        None => generic_client(),
    };
    Ok(Imported {
        toml: out,
        secrets,
        client,
    })
}

/// For Claude Desktop, Cursor, Claude Code, VS Code: one `warden` server instead of the list.
fn generic_client() -> Vec<(String, String)> {
    let stdio = serde_json::json!({
        "mcpServers": {"warden": {"command": "mcp-warden", "args": ["stdio", "--config", "/path/to/mcp-warden.toml"]}}
    });
    let http = serde_json::json!({
        "mcpServers": {"warden": {"type": "http", "url": "http://127.0.0.1:8787/mcp", "headers": {"Authorization": "Bearer ${MCP_WARDEN_TOKEN}"}}}
    });
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    vec![
        (
            "Point the client at mcp-warden instead (stdio):".to_string(),
            pretty(&stdio),
        ),
        (
            "or over HTTP (with `mcp-warden serve`):".to_string(),
            pretty(&http),
        ),
    ]
}

/// How long OpenClaw may wait for one MCP call through mcp-warden: longer than the longest
/// approval mcp-warden holds a call for (`approvals.max_expiry`, 1 hour by default), or
/// OpenClaw cancels a held call before a human decides.
const OPENCLAW_REQUEST_TIMEOUT_MS: u64 = 3_660_000;

/// OpenClaw passes no agent identity to MCP servers: each of its agents gets its own
/// mcp-warden entry (`--agent NAME`), and the other agents are denied that entry's tools.
/// Adds an `[agents.NAME]` table per OpenClaw agent to the config.
fn openclaw_client(v: &Value, out: &mut String) -> Vec<(String, String)> {
    let mut agents: Vec<String> = v
        .get("agents")
        .and_then(|a| a.get("entries"))
        .and_then(Value::as_object)
        .map(|e| e.keys().cloned().collect())
        .unwrap_or_default();
    if agents.is_empty() {
        agents.push("main".to_string());
    }
    let mut taken = BTreeSet::new();
    let names: Vec<(String, String)> = agents
        .iter()
        .map(|a| (a.clone(), upstream_name(a, &mut taken)))
        .collect();
    for (raw, name) in &names {
        out.push_str(&format!(
            "\n# OpenClaw agent {}: narrow what it sees (see `mcp-warden tools --agent {name}`).\n[agents.{name}]\ntools.allow = [\"*\"]\n",
            toml_str(raw)
        ));
    }
    // OpenClaw names an MCP server's tools `<prefix>__<tool>`, the prefix being the server's
    // key made provider-safe (lower case; other characters than [a-z0-9_-] become `-`): the
    // keys here are already, so the deny globs below match.
    let entry = |name: &str| format!("warden-{}", name.to_ascii_lowercase());
    let mut servers = serde_json::Map::new();
    let mut entries = serde_json::Map::new();
    for (raw, name) in &names {
        servers.insert(
            entry(name),
            serde_json::json!({
                "command": "mcp-warden",
                "args": ["stdio", "--config", "/path/to/mcp-warden.toml", "--agent", name],
                "requestTimeoutMs": OPENCLAW_REQUEST_TIMEOUT_MS,
            }),
        );
        let others: Vec<String> = names
            .iter()
            .filter(|(_, n)| n != name)
            .map(|(_, n)| format!("{}__*", entry(n)))
            .collect();
        if !others.is_empty() {
            entries.insert(raw.clone(), serde_json::json!({"tools": {"deny": others}}));
        }
    }
    let mut snippet = serde_json::json!({"mcp": {"servers": servers}});
    if !entries.is_empty() {
        snippet["agents"] = serde_json::json!({"entries": entries});
    }
    vec![(
        "In OpenClaw's config, replace `mcp.servers` with one mcp-warden entry per agent, each \
         agent denied the others' (merge `agents.entries` into yours; docs/openclaw.md):"
            .to_string(),
        serde_json::to_string_pretty(&snippet).unwrap_or_default(),
    )]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_secrets() {
        let mut t = BTreeSet::new();
        assert_eq!(upstream_name("Local Notes.v2", &mut t), "Local_Notes_v2");
        assert_eq!(upstream_name("a__b", &mut t), "a_b");
        assert_eq!(upstream_name("a__b", &mut t), "a_b-2");
        let i = import(r#"{"mcpServers":{"gh":{"command":"npx","env":{"GITHUB_TOKEN":"ghp_x","PLAIN":"a$b"}}}}"#, "t").unwrap();
        assert!(
            i.toml.contains(r#""GITHUB_TOKEN" = "${GH_GITHUB_TOKEN}""#),
            "{}",
            i.toml
        );
        assert!(i.toml.contains(r#""PLAIN" = "a$$b""#), "{}", i.toml);
        assert!(!i.toml.contains("ghp_x"));
        assert_eq!(
            i.secrets,
            vec![("GH_GITHUB_TOKEN".to_string(), "ghp_x".to_string())]
        );
    }
}
