//! `--scenario store`: what the approval store costs, the embedded SQLite database against a
//! fleet's PostgreSQL (`[store]`), in the same run, in front of the same demo server:
//!
//! - plain calls (`echo`, sequential): latency and the proxy's CPU per call — a plain call must
//!   not touch the store, so the two should match;
//! - the approval round trip: the demo's `send_email` asks for consent, mcp-warden holds the
//!   call, the bench decides it (`approvals.decide` on `/control`) and times from sending the
//!   decision until the agent's call has its answer (the decision recorded, the held call woken,
//!   the upstream called again with the token, the answer back).
//!
//! PostgreSQL is Debian's server, initialised in the scratch directory as the `postgres` user
//! when run as root, with its default durability (fsync on), on a loopback port.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Client, HttpClient, Outcome};
use crate::measure::Latency;
use crate::procs::{self, Proc};

const OPERATOR_ENV: &str = "MCP_WARDEN_BENCH_OPERATOR";
const SECRET_ENV: &str = "MCP_WARDEN_BENCH_FLEET_SECRET";

pub struct Settings {
    pub calls: u64,
    pub rounds: u64,
    pub call_timeout: Duration,
    pub clk_tck: u64,
}

/// One store's numbers.
struct Measured {
    store: &'static str,
    /// Microseconds.
    plain: Latency,
    plain_cpu_us: f64,
    /// Microseconds.
    round_trips: Latency,
    errors: u64,
}

/// Runs both stores and prints the comparison; `Ok(false)` if a call failed.
pub async fn run(
    warden: &Path,
    demo: &Path,
    scratch: &Path,
    settings: &Settings,
) -> Result<bool, String> {
    let pg = Postgres::start(scratch).await?;
    // The children read these from their environment (the config names the variables).
    std::env::set_var(OPERATOR_ENV, mcp_warden::approval::random_id(24));
    std::env::set_var(SECRET_ENV, mcp_warden::approval::random_id(32));
    let mut results = Vec::new();
    for store in ["sqlite", "postgres"] {
        eprintln!("bench: store {store}");
        let section = match store {
            "postgres" => format!(
                "[store]\nurl = \"postgres://warden@127.0.0.1:{}/warden?sslmode=disable\"\nsecret_env = \"{SECRET_ENV}\"\n",
                pg.port
            ),
            _ => String::new(),
        };
        results.push(measure(store, warden, demo, scratch, &section, settings).await?);
    }
    print(&results, settings);
    Ok(results.iter().all(|m| m.errors == 0))
}

async fn measure(
    store: &'static str,
    warden: &Path,
    demo: &Path,
    scratch: &Path,
    section: &str,
    settings: &Settings,
) -> Result<Measured, String> {
    let state = scratch.join(format!("store-{store}-state"));
    let config = scratch.join(format!("store-{store}.toml"));
    let text = format!(
        "# written by mcp-warden-bench\n[proxy]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n{section}\
         [operators.bench]\ntoken_env = \"{OPERATOR_ENV}\"\n\
         [upstreams.demo]\ncommand = {}\nargs = [\"stdio\"]\n",
        crate::toml_str(&state.to_string_lossy()),
        crate::toml_str(&demo.to_string_lossy()),
    );
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let config = config.to_string_lossy().into_owned();
    let mut proc = Proc::spawn(
        &format!("store-{store}"),
        warden,
        &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
        scratch,
    )?;
    let url = proc.announced_url(crate::WARDEN_ANNOUNCE).await?;
    let token = crate::single_user_token(&state).await;
    wait_ready(&url).await?;
    let client = HttpClient::connect(&url, token.as_deref(), 4, settings.call_timeout)
        .await
        .map_err(|e| format!("{}: {e} {}", proc.name(), proc.log_tail()))?;
    let client = std::sync::Arc::new(client);
    let mut errors = 0;

    // Plain calls: warm up, then sequential, with the proxy's CPU over the phase.
    let echo = Client::Http(client.clone());
    for _ in 0..200 {
        if !matches!(echo.echo(settings.call_timeout).await, Outcome::Ok) {
            errors += 1;
        }
    }
    let ticks = procs::cpu_ticks(proc.pid());
    let mut plain = Vec::new();
    for _ in 0..settings.calls {
        let started = Instant::now();
        match echo.echo(settings.call_timeout).await {
            Outcome::Ok => plain.push(started.elapsed().as_nanos() as u64),
            _ => errors += 1,
        }
    }
    let plain_cpu_us = match (ticks, procs::cpu_ticks(proc.pid())) {
        (Some(a), Some(b)) => {
            (b - a) as f64 * 1e6 / settings.clk_tck as f64 / settings.calls.max(1) as f64
        }
        _ => f64::NAN,
    };

    // Approval round trips.
    let control = reqwest::Client::builder()
        .no_proxy()
        .timeout(settings.call_timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let control_url = url.replace("/mcp", "/control");
    let operator = std::env::var(OPERATOR_ENV).unwrap_or_default();
    let rpc = |method: &'static str, params: Value| {
        let req = control
            .post(&control_url)
            .bearer_auth(&operator)
            .header("content-type", "application/json")
            .body(
                json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
            );
        async move {
            let body = req
                .send()
                .await
                .map_err(|e| format!("{method}: {e}"))?
                .bytes()
                .await
                .map_err(|e| format!("{method}: {e}"))?;
            serde_json::from_slice::<Value>(&body).map_err(|e| format!("{method}: {e}"))
        }
    };
    let mut round_trips = Vec::new();
    for r in 0..settings.rounds {
        let (c, timeout) = (client.clone(), settings.call_timeout);
        let call = tokio::spawn(async move {
            c.call(
                "send_email",
                json!({"to": format!("r{r}@example.com"), "subject": "bench", "body": "b"}),
                timeout,
            )
            .await
        });
        // Wait until it is held (not timed).
        let deadline = Instant::now() + settings.call_timeout;
        let id = loop {
            let list = rpc("approvals.list", json!({})).await?;
            if let Some(id) = list["result"][0]["id"].as_str() {
                break id.to_owned();
            }
            if Instant::now() > deadline {
                return Err(format!("{store}: the call was never held"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let started = Instant::now();
        let decided = rpc(
            "approvals.decide",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
        let answer = call.await.map_err(|e| e.to_string())?;
        let took = started.elapsed();
        match answer {
            Ok(v)
                if decided["result"].is_object()
                    && v["result"]["structuredContent"]["sent"] == true =>
            {
                round_trips.push(took.as_nanos() as u64)
            }
            Ok(v) => {
                eprintln!("bench: {store}: round {r}: unexpected answer {v} (decision {decided})");
                errors += 1;
            }
            Err(e) => {
                eprintln!("bench: {store}: round {r}: {e}");
                errors += 1;
            }
        }
    }
    echo.close().await;
    drop(proc);
    Ok(Measured {
        store,
        plain: Latency::of(plain),
        plain_cpu_us,
        round_trips: Latency::of(round_trips),
        errors,
    })
}

/// Waits for `/readyz` (a fleet replica is ready once its database is).
async fn wait_ready(url: &str) -> Result<(), String> {
    let readyz = url.replace("/mcp", "/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = reqwest::get(&readyz)
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{readyz} did not become ready within 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print(results: &[Measured], settings: &Settings) {
    println!(
        "\napproval store: {} sequential plain calls, {} approval round trips per store",
        settings.calls, settings.rounds
    );
    println!(
        "{:<10} {:>14} {:>14} {:>16} {:>18} {:>18} {:>16}",
        "store",
        "plain p50 µs",
        "plain p99 µs",
        "plain CPU µs",
        "approval p50 ms",
        "approval p90 ms",
        "approval max ms"
    );
    for m in results {
        println!(
            "{:<10} {:>14.1} {:>14.1} {:>16.1} {:>18.2} {:>18.2} {:>16.2}",
            m.store,
            m.plain.p50,
            m.plain.p99,
            m.plain_cpu_us,
            m.round_trips.p50 / 1000.0,
            m.round_trips.p90 / 1000.0,
            m.round_trips.max / 1000.0,
        );
    }
    if let [a, b] = results {
        println!(
            "postgres / sqlite: plain p50 x{:.2}, plain CPU x{:.2}, approval p50 x{:.2}",
            b.plain.p50 / a.plain.p50,
            b.plain_cpu_us / a.plain_cpu_us,
            b.round_trips.p50 / a.round_trips.p50,
        );
    }
    let json: Vec<Value> = results
        .iter()
        .map(|m| {
            json!({
                "store": m.store,
                "plain": {"p50_us": m.plain.p50, "p99_us": m.plain.p99, "cpu_us_per_call": m.plain_cpu_us},
                "approval_round_trip": {"p50_ms": m.round_trips.p50 / 1000.0, "p90_ms": m.round_trips.p90 / 1000.0, "max_ms": m.round_trips.max / 1000.0},
                "errors": m.errors,
            })
        })
        .collect();
    println!("{}", json!({"store": json}));
}

/// A throwaway PostgreSQL cluster (Debian's newest installed server), stopped when dropped.
struct Postgres {
    child: std::process::Child,
    port: u16,
}

impl Postgres {
    async fn start(scratch: &Path) -> Result<Postgres, String> {
        use std::os::unix::process::CommandExt;
        let bin = newest_postgres()?;
        let dir = scratch.join("postgres");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // PostgreSQL refuses to run as root: as the `postgres` user then.
        let user = nix_user_if_root(&dir)?;
        let as_user = |cmd: &mut std::process::Command| {
            if let Some((uid, gid)) = user {
                cmd.uid(uid).gid(gid);
            }
            cmd.current_dir(&dir);
        };
        let mut initdb = std::process::Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(dir.join("data")).args([
            "-U",
            "warden",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        as_user(&mut initdb);
        let o = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !o.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&o.stderr)));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut cmd = std::process::Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(dir.join("data"))
            .arg("-k")
            .arg(&dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        as_user(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("postgres: {e}"))?;
        let pg = Postgres { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::process::Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "warden",
                "-d",
                "postgres",
            ])
            .status()
            .is_ok_and(|s| s.success())
        {
            if Instant::now() > deadline {
                return Err("PostgreSQL did not start within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let o = std::process::Command::new(bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "warden",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE warden",
            ])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "CREATE DATABASE: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(pg)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Fast shutdown.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn newest_postgres() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "PostgreSQL is not installed (Debian: apt-get install postgresql-15)".to_string()
        })?
        .filter_map(|e| {
            let p = e.ok()?.path();
            let v = p.file_name()?.to_str()?.parse().ok()?;
            p.join("bin/postgres")
                .exists()
                .then_some((v, p.join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| "no PostgreSQL server under /usr/lib/postgresql".into())
}

/// As root: the `postgres` user's ids, and `dir` handed to it.
fn nix_user_if_root(dir: &Path) -> Result<Option<(u32, u32)>, String> {
    let me = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32, String> {
        let o = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .map_err(|_| "no `postgres` user to run PostgreSQL as".to_string())
    };
    let (uid, gid) = (id("-u")?, id("-g")?);
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    Ok(Some((uid, gid)))
}
