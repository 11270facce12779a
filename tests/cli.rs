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
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let body = reqwest::blocking::get(format!("http://127.0.0.1:{port}/readyz"))
        .unwrap()
        .text()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.contains("without TLS"), "{body}");
}
