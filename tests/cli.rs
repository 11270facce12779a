//! The command line as an operator uses it: `check` on good and bad configs, every bundled
//! config valid, `--help` everywhere, the stdio front serving the bundled quickstart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use std::process::Command;

use common::*;

fn warden(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(warden_bin())
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn check_accepts_every_bundled_config() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("proxy-config")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        // The examples read agent tokens from the environment.
        let o = Command::new(warden_bin())
            .args(["check", "--config", p.to_str().unwrap()])
            .env("ROUTER_TOKEN", "router-token-for-the-check")
            .env("SPECIALIST_TOKEN", "specialist-token-for-the-check")
            .env("ALICE_TOKEN", "alice-operator-token-for-the-check")
            .env(
                "MCP_WARDEN_AGENT_TOKEN",
                "sidecar-agent-token-for-the-check",
            )
            .env("PGPASSWORD", "fleet-db-password-for-the-check")
            .env(
                "MCP_WARDEN_FLEET_SECRET",
                "fleet-secret-for-the-check-0123456789abcdef",
            )
            .output()
            .unwrap();
        let (code, out, err) = (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        );
        assert_eq!(code, 0, "{}: {out}{err}", p.display());
        assert!(out.contains("config OK"), "{out}");
        n += 1;
    }
    assert!(n >= 3, "expected the bundled configs");
}

#[test]
fn check_without_config_uses_the_quickstart() {
    let (code, out, _) = warden(&["check"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("quickstart.toml") && out.contains("upstream demo"),
        "{out}"
    );
}

/// Found from outside: outside a checkout, without `--config`, no config was found. A binary
/// carries its default: from an empty directory, with no user config, `check` accepts it and
/// `tools` lists the demo server's tools (found next to the binary, as `cargo install` puts it).
#[test]
fn without_any_config_file_the_binary_uses_its_own_default() {
    demo_bin();
    let empty = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(warden_bin())
            .args(args)
            .current_dir(empty.path())
            .env("HOME", empty.path())
            .env("XDG_CONFIG_HOME", empty.path().join("config"))
            .env("XDG_STATE_HOME", empty.path().join("state"))
            .output()
            .unwrap()
    };
    let o = run(&["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("config OK: the built-in default") && out.contains("upstream demo"),
        "{out}"
    );
    let o = run(&["tools"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("echo    (demo: echo)"), "{out}");
}

/// Found from outside: relative `args` resolved against the caller's directory, and `check`
/// said OK and `tools` exited 0 with a dead upstream. An argument naming a file next to the
/// config is that file from any directory; `tools` and `check --probe` exit 1 when an upstream
/// does not answer, and say which.
#[test]
fn relative_args_are_next_to_the_config_and_dead_upstreams_fail_tools_and_probe() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/fixtures/golden_upstream.py"),
        dir.path().join("golden_upstream.py"),
    )
    .unwrap();
    let good = write_config(
        dir.path(),
        "[upstreams.golden]\ncommand = \"python3\"\nargs = [\"golden_upstream.py\"]\n",
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str], cfg: &std::path::Path| {
        let o = Command::new(warden_bin())
            .args(args)
            .arg("--config")
            .arg(cfg)
            .current_dir(elsewhere.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (code, out) = run(&["tools"], &good);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("golden    (golden: golden)"), "{out}");
    let (code, out) = run(&["check", "--probe"], &good);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("probe golden: ok"), "{out}");
    // Operator commands neither serve a control socket nor open the approval store (found
    // from outside: `tools` served one beside the running instance's).
    let mut left = vec![];
    let mut dirs = vec![dir.path().join("state")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                dirs.push(e.path());
            } else if name.ends_with(".sock") || name.starts_with("warden.db") {
                left.push(name);
            }
        }
    }
    assert!(left.is_empty(), "operator commands left {left:?}");
    let dead_dir = tempfile::tempdir().unwrap();
    let dead = write_config(
        dead_dir.path(),
        &format!(
            "{}[upstreams.dead]\ncommand = \"/nonexistent/mcp-server\"\nstartup_timeout_secs = 5\n",
            golden_upstream("golden")
        ),
    );
    let (code, out) = run(&["check"], &dead);
    assert_eq!(code, 0, "a config that parses is valid: {out}");
    let (code, out) = run(&["check", "--probe"], &dead);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("probe dead: FAILED") && out.contains("probe golden: ok"),
        "{out}"
    );
    let (code, out) = run(&["tools"], &dead);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("upstream dead is unavailable"), "{out}");
}

#[test]
fn check_reports_every_error_with_its_path_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[proxy]\nlisten = \"localhost\"\n[upstreams.a]\ncomand = \"x\"\n[upstreams.b]\nurl = \"http://x/mcp\"\nheaders = { A = \"${MCP_WARDEN_TEST_SURELY_UNSET}\" }\n",
    );
    let (code, out, err) = warden(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "proxy.listen:",
        "upstreams.a.comand: unknown key (did you mean `command`?)",
        "upstreams.a: missing `command`",
        "upstreams.b.headers.A: environment variable `MCP_WARDEN_TEST_SURELY_UNSET` is not set",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn check_never_prints_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[upstreams.b]\nurl = \"http://127.0.0.1:1/mcp\"\nheaders = { Authorization = \"Bearer ${MCP_WARDEN_TEST_SECRET}\" }\n[upstreams.c]\ncommand = \"x\"\nenv = { K = \"${MCP_WARDEN_TEST_SECRET}\" }\n");
    let o = Command::new(warden_bin())
        .args(["check", "--config", cfg.to_str().unwrap()])
        .env("MCP_WARDEN_TEST_SECRET", "hunter2-very-secret")
        .output()
        .unwrap();
    assert!(o.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn help_everywhere() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["stdio", "--help"],
        vec!["check", "--help"],
    ] {
        let (code, out, _) = warden(&args);
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, _, err) = warden(&["check", "--config", "/nonexistent/warden.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read /nonexistent/warden.toml"),
        "{err}"
    );
}

#[test]
fn stdio_upstream_environment_is_cleared_except_what_the_config_names() {
    let everything =
        node_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let cfg = format!(
        "[proxy]\nauth = \"none\"\n[upstreams.ev]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\nenv = {{ GIVEN = \"${{MCP_WARDEN_TEST_GIVEN}}\" }}\n",
        everything.display().to_string()
    );
    let proxy = HttpProxy::start_raw(
        &cfg,
        &[
            ("MCP_WARDEN_TEST_GIVEN", "named-in-config"),
            ("AWS_SECRET_ACCESS_KEY", "must-not-leak"),
        ],
    );
    let url = proxy.url.clone();
    let env = node_client(&[
        "--http",
        &url,
        "--scenario",
        "call",
        "--tool",
        "get-env",
        "--args",
        "{}",
    ]);
    let text = env["result"].to_string();
    assert!(text.contains("named-in-config"), "{text}");
    assert!(
        !text.contains("must-not-leak"),
        "the proxy's environment leaked into the upstream"
    );
    assert!(
        text.contains("PATH"),
        "the documented minimum is passed: {text}"
    );
}

#[test]
fn non_loopback_listener_is_refused_without_the_dangerous_flag() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, demo_upstream("demo", &[])).unwrap();
    let cfg = write_config(
        dir.path(),
        &format!("[proxy]\nauth = \"none\"\n{}", demo_upstream("demo", &[])),
    );
    let o = Command::new(warden_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&plain)
        .env("XDG_STATE_HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing to listen on 0.0.0.0:0"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Even with the flag, no authentication is not allowed beyond loopback.
    let o = Command::new(warden_bin())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--dangerously-allow-insecure-remote",
            "--config",
        ])
        .arg(&cfg)
        .env("XDG_STATE_HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs authentication"));
}

#[test]
fn insecure_remote_listener_is_reported_by_readyz() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[proxy]\nallowed_hosts = [\"*\"]\n{}",
            demo_upstream("demo", &[])
        ),
    );
    let mut child = Command::new(warden_bin())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--dangerously-allow-insecure-remote",
            "--config",
        ])
        .arg(&cfg)
        .env("XDG_STATE_HOME", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = port_of(&line);
    let body = reqwest::blocking::get(format!("http://127.0.0.1:{port}/readyz"))
        .unwrap()
        .text()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.contains("without TLS"), "{body}");
}

/// `import` turns each client's own config format into one `check` accepts, with the secrets
/// moved out to environment variables it names — and never written to the config.
#[test]
fn import_converts_real_client_configs_into_checked_configs() {
    let cases = [
        (
            "claude_desktop_config.json",
            &["ghp_exampleexampleexample"][..],
            &["filesystem", "github", "time"][..],
        ),
        (
            "cursor_mcp.json",
            &["ctx7-secret-value"][..],
            &["context7", "Local_Notes_v2"][..],
        ),
        (
            "claude_code.mcp.json",
            &["sk-live-abc"][..],
            &["sentry", "legacy-events", "memory"][..],
        ),
        // OpenClaw's JSON5, with its agents.
        (
            "openclaw.json5",
            &["ghp_openclawexample0001", "lin_openclaw_secret_2"][..],
            &["github", "linear"][..],
        ),
        // Found from outside: secrets in arguments and URL queries were copied verbatim, and
        // a disabled server was imported enabled.
        (
            "secrets_in_args.mcp.json",
            &["sk-args-secret-1", "tok-args-secret-2", "url-secret-3"][..],
            &["search", "remote", "old"][..],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (file, secrets, upstreams) in cases {
        let src = root().join("tests/fixtures/imports").join(file);
        let out = dir.path().join(format!("{file}.toml"));
        let (code, stdout, stderr) = warden(&[
            "import",
            src.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{file}: {stdout}{stderr}");
        let toml = std::fs::read_to_string(&out).unwrap();
        for s in secrets {
            assert!(
                !toml.contains(s),
                "{file}: secret {s} copied into the config:\n{toml}"
            );
            assert!(
                !stderr.contains(s) && !stdout.contains(s),
                "{file}: secret {s} printed"
            );
        }
        for u in upstreams {
            assert!(
                toml.contains(&format!("[upstreams.{u}]")),
                "{file}: no upstream {u}:\n{toml}"
            );
        }
        // The variables it asks for are exactly what `check` needs to accept the config.
        let vars: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export ")?.strip_suffix("=…"))
            .collect();
        assert!(!vars.is_empty(), "{file}: no variables named:\n{stderr}");
        let check = |with_vars: bool| {
            let mut c = Command::new(warden_bin());
            c.args(["check", "--config", out.to_str().unwrap()])
                .env("NOTES_TOKEN", "t");
            if with_vars {
                for v in &vars {
                    c.env(v, "value-from-the-environment");
                }
            }
            c.output().unwrap()
        };
        let ok = check(true);
        assert!(
            ok.status.success(),
            "{file}: check failed:\n{}\n{toml}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let missing = check(false);
        assert!(
            !missing.status.success(),
            "{file}: check passed without the secret variables"
        );
        assert!(
            String::from_utf8_lossy(&missing.stderr).contains(vars[0]),
            "{file}: error does not name {}",
            vars[0]
        );
        // It never overwrites.
        let (again, _, err) = warden(&[
            "import",
            src.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(again, 1, "{file}: overwrote an existing file");
        assert!(err.contains("cannot write"), "{err}");
    }
    // `${VAR}` references a client already uses stay references.
    let cursor = std::fs::read_to_string(dir.path().join("cursor_mcp.json.toml")).unwrap();
    assert!(
        cursor.contains(r#""NOTES_TOKEN" = "${NOTES_TOKEN}""#),
        "{cursor}"
    );
    let args = std::fs::read_to_string(dir.path().join("secrets_in_args.mcp.json.toml")).unwrap();
    assert!(
        args.contains(
            r#""--api-key=${SEARCH_API_KEY}", "--token", "${SEARCH_TOKEN}", "--verbose""#
        ) && args.contains(r#"?token=${REMOTE_TOKEN}&region=eu""#)
            && args.contains("[upstreams.old]\nenabled = false\n"),
        "{args}"
    );
    // OpenClaw: each of its agents gets an agent here and its own mcp-warden entry there, the
    // others' entries denied to it; the HTTP server keeps its transport.
    let openclaw = std::fs::read_to_string(dir.path().join("openclaw.json5.toml")).unwrap();
    assert!(
        openclaw.contains("[agents.research]") && openclaw.contains("[agents.ops-bot]"),
        "{openclaw}"
    );
    assert!(
        openclaw.contains("transport = \"streamable-http\""),
        "{openclaw}"
    );
    let src = root().join("tests/fixtures/imports/openclaw.json5");
    let (_, _, err) = warden(&["import", src.to_str().unwrap()]);
    let snippet = err
        .split_once("docs/openclaw.md):\n")
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no OpenClaw snippet:\n{err}"));
    let snippet: serde_json::Value = serde_json::Deserializer::from_str(snippet)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let research = &snippet["mcp"]["servers"]["warden-research"];
    assert_eq!(
        research["args"],
        serde_json::json!([
            "stdio",
            "--config",
            "/path/to/mcp-warden.toml",
            "--agent",
            "research"
        ]),
        "{snippet}"
    );
    assert!(research["requestTimeoutMs"].as_u64().unwrap() > 3_600_000);
    assert_eq!(
        snippet["agents"]["entries"]["research"]["tools"]["deny"],
        serde_json::json!(["warden-ops-bot__*"]),
        "{snippet}"
    );
    // Not a client config: a clear error, exit 1.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"servers": 3}"#).unwrap();
    let (code, _, err) = warden(&["import", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.json"), "{err}");
}

/// The container files stay consistent with the tree: every path the Dockerfile copies exists,
/// and the config baked into the image passes `check`. (Building the image needs a Docker
/// daemon, which the test machine does not have.)
#[test]
fn container_files_reference_what_exists_and_the_baked_config_checks() {
    let dockerfile = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        // (Sources named by build arguments are the prebuilt binaries: tests/container.rs
        // builds the image from them.)
        for src in parts[1..parts.len() - 1]
            .iter()
            .filter(|s| !s.contains("${"))
        {
            assert!(root().join(src).exists(), "Dockerfile copies missing {src}");
        }
    }
    let o = Command::new(warden_bin())
        .args([
            "check",
            "--config",
            root()
                .join("proxy-config/docker-sidecar.toml")
                .to_str()
                .unwrap(),
        ])
        .env(
            "MCP_WARDEN_AGENT_TOKEN",
            "a-long-random-token-for-the-check-0123",
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The image's health check, run against the baked config (its binary paths and port
    // moved to this machine), answers healthy: the Host it sends is one the config allows.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let baked = std::fs::read_to_string(root().join("proxy-config/docker-sidecar.toml")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let local = baked
        .replace(
            "/usr/local/bin/mcp-warden-demo",
            demo_bin().to_str().unwrap(),
        )
        .replace("8787", &port.to_string())
        .replace("/var/lib/mcp-warden", state.path().to_str().unwrap());
    let cfg = write_config(state.path(), &local);
    let mut serve = Command::new(warden_bin())
        .args([
            "serve",
            "--dangerously-allow-insecure-remote",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env(
            "MCP_WARDEN_AGENT_TOKEN",
            "a-long-random-token-for-the-check-0123",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("mcp-warden listening on"), "{line}");
    let health = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|h| h.split_once("CMD "))
        .map(|(_, cmd)| cmd.lines().next().unwrap())
        .unwrap();
    let argv: Vec<String> =
        serde_json::from_str(&health.replace("8787", &port.to_string())).unwrap();
    let ok = Command::new(&argv[0]).args(&argv[1..]).status().unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        ok.success(),
        "the image's HEALTHCHECK fails against its own config: {argv:?}"
    );

    let compose = std::fs::read_to_string(root().join("docker/compose.yaml")).unwrap();
    assert!(
        compose.contains("dockerfile: docker/Dockerfile")
            && compose.contains("/etc/mcp-warden/mcp-warden.toml")
    );
    assert!(dockerfile
        .contains("COPY proxy-config/docker-sidecar.toml /etc/mcp-warden/mcp-warden.toml"));
}
