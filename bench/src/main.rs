//! `mcp-warden-bench`: what does putting mcp-warden in front of an MCP server cost?
//!
//! It measures `tools/call` of the demo server's `echo` tool through mcp-warden and over a direct
//! connection to the same upstream, in the same run, and prints the difference: sequential
//! latency (p50/p90/p99), throughput with 16 and 64 calls in flight, the proxy's CPU time per
//! call and its memory. Every call carries a unique message `m-<id>`; an answer with the wrong id
//! or the wrong text is counted as a mismatch, and there must be none.
//!
//! - Scenario A, stdio upstream (`mcp-warden-demo stdio`): direct over NDJSON; through
//!   `mcp-warden stdio` over NDJSON (stdio→stdio); through `mcp-warden serve` over HTTP, by a
//!   2025-11-25 session client and by a 2026-07-28 (stateless) client.
//! - Scenario B, HTTP upstream (`mcp-warden-demo http`): direct over HTTP; through
//!   `mcp-warden serve` (`url = …`) over HTTP, in front of the same demo server process.
//!
//! Everything runs on 127.0.0.1, every loop is bounded in count and time, and every child process
//! is stopped by a guard when the bench ends, fails or panics. See `bench/README.md`.

mod client;
mod jwt;
mod measure;
mod procs;
mod report;
mod store;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use client::{Client, HttpClient, StdioClient};
use measure::{Run, Settings};
use procs::Proc;

const USAGE: &str = "\
mcp-warden-bench: tools/call latency, throughput, CPU and memory through mcp-warden versus a
direct connection to the same upstream (the bundled demo server), measured in the same run.

Usage: mcp-warden-bench [options]

Options:
  --calls N               sequential calls per run (latency percentiles)   [default 2000]
  --load-calls N          calls per throughput phase                       [default 20000]
  --warmup N              warm-up calls per run (sequential, then a burst) [default 500]
  --concurrency LIST      calls in flight for the throughput phases        [default 16,64]
  --max-phase-secs S      time limit of one phase (it stops at its count or this) [default 60]
  --call-timeout-secs S   limit for one call; a call over it is an error   [default 10]
  --quick                 small counts for a smoke run (calls 200, load 2000, warm-up 50, 20 s)
  --scenario A|B|all|store  run only the stdio-upstream (A) or HTTP-upstream (B) scenario [all];
                          `store`: the approval store instead, SQLite against PostgreSQL (plain
                          calls and approval round trips; needs Debian's postgresql)
  --rounds N              approval round trips per store (scenario store)  [default 200]
  --response-mode M       write `[proxy] response_mode = M` (auto, sse or json) into the proxy's
                          config; default: leave it out (the proxy's default)
  --warden PATH           the mcp-warden binary  [target/release/mcp-warden, else target/debug]
  --demo PATH             the demo server binary [target/release/mcp-warden-demo, else target/debug]
  -h, --help              print this help

Output: tables on stdout, then one JSON object with every number; progress on stderr.
Exit status: 0 if every call succeeded and matched, 1 otherwise, 2 on bad usage.
";

#[derive(Debug)]
struct Options {
    settings: Settings,
    scenario_a: bool,
    scenario_b: bool,
    warden: Option<PathBuf>,
    demo: Option<PathBuf>,
    quick: bool,
    response_mode: Option<String>,
    /// `--scenario store`: approval round trips per store (else `None`).
    store_rounds: Option<u64>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut calls: Option<u64> = None;
    let mut load: Option<u64> = None;
    let mut warmup: Option<u64> = None;
    let mut phase_secs: Option<u64> = None;
    let mut call_timeout = 10;
    let mut concurrency = vec![16, 64];
    let mut quick = false;
    let mut scenario = "all".to_owned();
    let (mut warden, mut demo) = (None, None);
    let mut response_mode = None;
    let mut rounds = 200;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs {what}"))
        };
        let number = |s: String| -> Result<u64, String> {
            s.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{flag}: `{s}` is not a positive whole number"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => quick = true,
            "--calls" => calls = Some(number(value("a count")?)?),
            "--load-calls" => load = Some(number(value("a count")?)?),
            "--warmup" => warmup = Some(number(value("a count")?)?),
            "--max-phase-secs" => phase_secs = Some(number(value("seconds")?)?),
            "--call-timeout-secs" => call_timeout = number(value("seconds")?)?,
            "--concurrency" => {
                concurrency = value("a list like 16,64")?
                    .split(',')
                    .map(|s| number(s.trim().to_owned()))
                    .collect::<Result<_, _>>()?;
                if concurrency.iter().any(|&c| c > 1024) {
                    return Err("--concurrency: at most 1024 in flight".into());
                }
            }
            "--scenario" => scenario = value("A, B, all or store")?.to_ascii_lowercase(),
            "--rounds" => rounds = number(value("a count")?)?,
            "--response-mode" => {
                let m = value("auto, sse or json")?;
                if !["auto", "sse", "json"].contains(&m.as_str()) {
                    return Err(format!("--response-mode: `{m}` is not auto, sse or json"));
                }
                response_mode = Some(m);
            }
            "--warden" => warden = Some(PathBuf::from(value("a path")?)),
            "--demo" => demo = Some(PathBuf::from(value("a path")?)),
            _ => return Err(format!("unexpected argument `{arg}`")),
        }
    }
    let (scenario_a, scenario_b) = match scenario.as_str() {
        "a" => (true, false),
        "b" => (false, true),
        "all" => (true, true),
        "store" => (false, false),
        s => return Err(format!("--scenario: `{s}` is not A, B, all or store")),
    };
    let (d_calls, d_load, d_warmup, d_secs) = if quick {
        (200, 2000, 50, 20)
    } else {
        (2000, 20000, 500, 60)
    };
    let (clk_tck, _) = procs::clock_ticks();
    Ok(Some(Options {
        settings: Settings {
            warmup: warmup.unwrap_or(d_warmup),
            calls: calls.unwrap_or(d_calls),
            load_calls: load.unwrap_or(d_load),
            concurrency,
            phase_limit: Duration::from_secs(phase_secs.unwrap_or(d_secs)),
            call_timeout: Duration::from_secs(call_timeout),
            clk_tck,
        },
        scenario_a,
        scenario_b,
        warden,
        demo,
        quick,
        response_mode,
        store_rounds: (scenario == "store").then_some(rounds),
    }))
}

/// `given`, else `target/release/<name>`, else `target/debug/<name>` under the workspace root.
fn find_binary(given: Option<PathBuf>, name: &str) -> Result<PathBuf, String> {
    let path = match given {
        Some(p) => p,
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."));
            let candidates = ["release", "debug"].map(|p| root.join("target").join(p).join(name));
            candidates
                .iter()
                .find(|p| p.is_file())
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{name} not found at {} or {}; build it: cargo build --release -p mcp-warden -p mcp-warden-demo",
                        candidates[0].display(),
                        candidates[1].display()
                    )
                })?
        }
    };
    path.canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A scratch directory for configs and child logs; removed at the end unless something failed.
struct Scratch {
    dir: PathBuf,
    keep: bool,
}

impl Scratch {
    fn create() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("mcp-warden-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Scratch { dir, keep: false })
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "bench: configs and child logs kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A TOML basic string (JSON string escapes are valid TOML).
fn toml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The upstream mcp-warden is put in front of.
enum Upstream<'a> {
    Stdio(&'a Path),
    Http(&'a str),
}

/// An mcp-warden config: the demo server as the one upstream, and the proxy's state directory
/// (where the single-user HTTP token is written) inside the bench's scratch directory, so the
/// bench never touches the user's own state.
fn warden_config(
    upstream: &Upstream<'_>,
    state_dir: &Path,
    response_mode: Option<&str>,
    extra: &str,
) -> String {
    let upstream = match upstream {
        Upstream::Stdio(demo) => format!(
            "command = {}\nargs = [\"stdio\"]\n",
            toml_str(&demo.to_string_lossy())
        ),
        Upstream::Http(url) => format!("url = {}\n", toml_str(url)),
    };
    let mode = response_mode.map_or(String::new(), |m| {
        format!("response_mode = {}\n", toml_str(m))
    });
    format!(
        "# written by mcp-warden-bench\n[proxy]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n{mode}\n[upstreams.demo]\n{upstream}\n{extra}",
        toml_str(&state_dir.to_string_lossy())
    )
}

/// The bearer token mcp-warden generated for this run (single-user mode, no agents configured):
/// it writes it to `<state_dir>/http-token` as it starts serving. `None` if no file appears
/// (then the bench connects without credentials).
async fn single_user_token(state_dir: &Path) -> Option<String> {
    let path = state_dir.join("http-token");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Ok(token) = std::fs::read_to_string(&path) {
            let token = token.trim();
            if !token.is_empty() {
                return Some(token.to_owned());
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "bench: no {} appeared; connecting without a bearer token",
                path.display()
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WARDEN_ANNOUNCE: &str = "mcp-warden listening on ";
const DEMO_ANNOUNCE: &str = "listening on ";

/// The pid of the demo server mcp-warden started as its stdio upstream (polled briefly).
async fn upstream_child(warden: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let kids: Vec<u32> = procs::children(warden)
            .into_iter()
            .filter(|(_, comm)| comm.starts_with("mcp-warden-demo"))
            .map(|(pid, _)| pid)
            .collect();
        if kids.len() > 1 {
            eprintln!(
                "bench: mcp-warden (pid {warden}) runs {} demo children; CPU counted for the first",
                kids.len()
            );
        }
        if let Some(&pid) = kids.first() {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            eprintln!("bench: no demo child of mcp-warden (pid {warden}) found; upstream CPU not measured");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Ctx {
    settings: Settings,
    warden: PathBuf,
    demo: PathBuf,
    scratch: Scratch,
    response_mode: Option<String>,
}

impl Ctx {
    fn pool(&self) -> usize {
        let max = self.settings.concurrency.iter().copied().max().unwrap_or(1);
        usize::try_from(max).unwrap_or(64) + 8
    }

    async fn stdio_client(&self, proc: &mut Proc) -> Result<Client, String> {
        let (stdin, stdout) = proc.take_stdio()?;
        let client = StdioClient::connect(stdin, stdout, self.settings.call_timeout)
            .await
            .map_err(|e| format!("{}: {e} {}", proc.name(), proc.log_tail()))?;
        Ok(Client::Stdio(std::sync::Arc::new(client)))
    }

    async fn http_client(
        &self,
        proc: &Proc,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<Client, String> {
        let client = HttpClient::connect(url, bearer, self.pool(), self.settings.call_timeout)
            .await
            .map_err(|e| format!("{} ({url}): {e} {}", proc.name(), proc.log_tail()))?;
        Ok(Client::Http(std::sync::Arc::new(client)))
    }

    async fn finish(&self, run: &mut Run, client: &Client) {
        measure::measure(run, client, &self.settings).await;
        client.close().await;
    }

    /// A: the bench ⇄ `mcp-warden-demo stdio`.
    async fn a_direct(&self, run: &mut Run) -> Result<(), String> {
        let mut demo = Proc::spawn("a-demo-stdio", &self.demo, &["stdio"], &self.scratch.dir)?;
        let client = self.stdio_client(&mut demo).await?;
        run.upstream_pid = Some(demo.pid());
        self.finish(run, &client).await;
        Ok(())
    }

    /// Writes `<name>.toml` (state in `<name>-state/`) for mcp-warden in front of `upstream`.
    fn config(&self, name: &str, upstream: &Upstream<'_>) -> Result<(String, PathBuf), String> {
        self.config_with(name, upstream, "")
    }

    fn config_with(
        &self,
        name: &str,
        upstream: &Upstream<'_>,
        extra: &str,
    ) -> Result<(String, PathBuf), String> {
        let state = self.scratch.dir.join(format!("{name}-state"));
        let config = self.scratch.write(
            &format!("{name}.toml"),
            &warden_config(upstream, &state, self.response_mode.as_deref(), extra),
        )?;
        Ok((config.to_string_lossy().into_owned(), state))
    }

    /// Starts `mcp-warden serve` in front of `upstream`; its URL and bearer token.
    async fn warden_serve(
        &self,
        name: &str,
        upstream: &Upstream<'_>,
    ) -> Result<(Proc, String, Option<String>), String> {
        let (config, state) = self.config(name, upstream)?;
        let mut warden = Proc::spawn(
            name,
            &self.warden,
            &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
            &self.scratch.dir,
        )?;
        let url = warden.announced_url(WARDEN_ANNOUNCE).await?;
        let token = single_user_token(&state).await;
        Ok((warden, url, token))
    }

    /// A: the bench ⇄ `mcp-warden stdio` ⇄ `mcp-warden-demo stdio`.
    async fn a_proxied_stdio(&self, run: &mut Run) -> Result<(), String> {
        let name = "a-warden-stdio";
        let (config, _) = self.config(name, &Upstream::Stdio(&self.demo))?;
        let mut warden = Proc::spawn(
            name,
            &self.warden,
            &["stdio", "--config", &config],
            &self.scratch.dir,
        )?;
        let client = self.stdio_client(&mut warden).await?;
        run.proxy_pid = Some(warden.pid());
        run.upstream_pid = upstream_child(warden.pid()).await;
        self.finish(run, &client).await;
        Ok(())
    }

    /// A: the bench ⇄HTTP⇄ `mcp-warden serve` ⇄ `mcp-warden-demo stdio`.
    async fn a_proxied_http(&self, run: &mut Run) -> Result<(), String> {
        let (warden, url, token) = self
            .warden_serve("a-warden-serve", &Upstream::Stdio(&self.demo))
            .await?;
        let client = self.http_client(&warden, &url, token.as_deref()).await?;
        run.proxy_pid = Some(warden.pid());
        run.upstream_pid = upstream_child(warden.pid()).await;
        self.finish(run, &client).await;
        Ok(())
    }

    /// A: the bench ⇄HTTP (a JWT of the bench's identity provider)⇄ `mcp-warden serve` ⇄stdio⇄
    /// demo.
    async fn a_proxied_http_jwt(&self, run: &mut Run) -> Result<(), String> {
        let issuer = jwt::Issuer::start().await?;
        // The endpoint's URL is the tokens' audience: its port is chosen before it starts.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let resource = format!("http://{listen}/mcp");
        let name = "a-warden-serve-jwt";
        let (config, _) = self.config_with(
            name,
            &Upstream::Stdio(&self.demo),
            &issuer.config(&resource),
        )?;
        let mut warden = Proc::spawn(
            name,
            &self.warden,
            &["serve", "--config", &config, "--listen", &listen],
            &self.scratch.dir,
        )?;
        let url = warden.announced_url(WARDEN_ANNOUNCE).await?;
        let token = issuer.token(&resource)?;
        let client = self.http_client(&warden, &url, Some(&token)).await?;
        run.proxy_pid = Some(warden.pid());
        run.upstream_pid = upstream_child(warden.pid()).await;
        self.finish(run, &client).await;
        Ok(())
    }

    /// A: the bench ⇄HTTP (2026-07-28, stateless)⇄ `mcp-warden serve` ⇄stdio⇄ demo.
    async fn a_proxied_http_2026(&self, run: &mut Run) -> Result<(), String> {
        let (warden, url, token) = self
            .warden_serve("a-warden-serve-2026", &Upstream::Stdio(&self.demo))
            .await?;
        let client = HttpClient::modern(
            &url,
            token.as_deref(),
            self.pool(),
            self.settings.call_timeout,
        )
        .map_err(|e| format!("{} ({url}): {e}", warden.name()))?;
        let client = Client::Http(std::sync::Arc::new(client));
        // The upstream child starts with the first request (the caller's internal session).
        let _ = client.echo(self.settings.call_timeout).await;
        run.proxy_pid = Some(warden.pid());
        run.upstream_pid = upstream_child(warden.pid()).await;
        self.finish(run, &client).await;
        Ok(())
    }

    /// B: the bench ⇄HTTP⇄ `mcp-warden-demo http`.
    async fn b_direct(&self, run: &mut Run, demo: &Proc, url: &str) -> Result<(), String> {
        let client = self.http_client(demo, url, None).await?;
        run.upstream_pid = Some(demo.pid());
        self.finish(run, &client).await;
        Ok(())
    }

    /// B: the bench ⇄HTTP⇄ `mcp-warden serve` ⇄HTTP⇄ the same `mcp-warden-demo http`.
    async fn b_proxied(&self, run: &mut Run, demo: &Proc, url: &str) -> Result<(), String> {
        let (warden, front, token) = self
            .warden_serve("b-warden-serve", &Upstream::Http(url))
            .await?;
        let client = self.http_client(&warden, &front, token.as_deref()).await?;
        run.proxy_pid = Some(warden.pid());
        run.upstream_pid = Some(demo.pid());
        self.finish(run, &client).await;
        Ok(())
    }
}

fn new_run(key: &str, path: &str, proxied: bool) -> Run {
    eprintln!("bench: {key}: {path}");
    Run {
        key: key.to_owned(),
        path: path.to_owned(),
        proxied,
        ..Run::default()
    }
}

fn record(mut run: Run, outcome: Result<(), String>, runs: &mut Vec<Run>) {
    if let Err(e) = outcome {
        eprintln!("bench: {}: FAILED: {e}", run.key);
        run.setup_error = Some(e);
    }
    runs.push(run);
}

async fn run_all(ctx: &Ctx, a: bool, b: bool) -> Vec<Run> {
    let mut runs = Vec::new();
    if a {
        let mut run = new_run("A.direct-stdio", "bench =stdio=> demo", false);
        let r = ctx.a_direct(&mut run).await;
        record(run, r, &mut runs);
        let mut run = new_run(
            "A.proxied-stdio",
            "bench =stdio=> mcp-warden stdio =stdio=> demo",
            true,
        );
        let r = ctx.a_proxied_stdio(&mut run).await;
        record(run, r, &mut runs);
        let mut run = new_run(
            "A.proxied-http",
            "bench =HTTP=> mcp-warden serve =stdio=> demo",
            true,
        );
        let r = ctx.a_proxied_http(&mut run).await;
        record(run, r, &mut runs);
        let mut run = new_run(
            "A.proxied-http-2026",
            "bench =HTTP 2026-07-28 (stateless)=> mcp-warden serve =stdio=> demo",
            true,
        );
        let r = ctx.a_proxied_http_2026(&mut run).await;
        record(run, r, &mut runs);
        let mut run = new_run(
            "A.proxied-http-jwt",
            "bench =HTTP (JWT access token, [auth.oidc])=> mcp-warden serve =stdio=> demo",
            true,
        );
        let r = ctx.a_proxied_http_jwt(&mut run).await;
        record(run, r, &mut runs);
    }
    if b {
        let started = async {
            let mut demo = Proc::spawn(
                "b-demo-http",
                &ctx.demo,
                &["http", "--listen", "127.0.0.1:0"],
                &ctx.scratch.dir,
            )?;
            let url = demo.announced_url(DEMO_ANNOUNCE).await?;
            Ok::<_, String>((demo, url))
        };
        match started.await {
            Ok((demo, url)) => {
                let mut run = new_run("B.direct-http", "bench =HTTP=> demo", false);
                let r = ctx.b_direct(&mut run, &demo, &url).await;
                record(run, r, &mut runs);
                let mut run = new_run(
                    "B.proxied-http",
                    "bench =HTTP=> mcp-warden serve =HTTP=> demo (same process)",
                    true,
                );
                let r = ctx.b_proxied(&mut run, &demo, &url).await;
                record(run, r, &mut runs);
            }
            Err(e) => record(
                new_run("B.direct-http", "demo http", false),
                Err(e),
                &mut runs,
            ),
        }
    }
    runs
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn main_async(opts: Options) -> Result<bool, String> {
    let warden = find_binary(opts.warden.clone(), "mcp-warden")?;
    let demo = find_binary(opts.demo.clone(), "mcp-warden-demo")?;
    for p in [&warden, &demo] {
        if p.components().any(|c| c.as_os_str() == "debug") {
            eprintln!(
                "bench: WARNING: {} looks like a debug build; numbers will not be representative",
                p.display()
            );
        }
    }
    let (clk_tck, clk_source) = procs::clock_ticks();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load_before = loadavg();
    let ctx = Ctx {
        settings: opts.settings.clone(),
        warden,
        demo,
        scratch: Scratch::create()?,
        response_mode: opts.response_mode.clone(),
    };
    if let Some(rounds) = opts.store_rounds {
        let settings = store::Settings {
            calls: ctx.settings.calls,
            rounds,
            call_timeout: ctx.settings.call_timeout,
            clk_tck,
        };
        let clean = store::run(&ctx.warden, &ctx.demo, &ctx.scratch.dir, &settings).await;
        let mut ctx = ctx;
        ctx.scratch.keep = !matches!(clean, Ok(true));
        return clean;
    }
    let started = Instant::now();
    let runs = run_all(&ctx, opts.scenario_a, opts.scenario_b).await;
    let meta = report::Meta {
        warden: ctx.warden.display().to_string(),
        demo: ctx.demo.display().to_string(),
        cpus,
        clk_tck,
        clk_source: clk_source.to_owned(),
        load_before,
        load_after: loadavg(),
        wall: started.elapsed(),
        quick: opts.quick,
        response_mode: opts.response_mode.clone(),
    };
    let clean = runs.iter().all(|r| r.errors() == 0 && r.mismatches() == 0);
    report::print(&meta, &ctx.settings, &runs);
    let mut ctx = ctx;
    ctx.scratch.keep = !clean;
    Ok(clean)
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mcp-warden-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-warden-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        // Ctrl-C drops the run (and with it every child-process guard) instead of leaving
        // children behind.
        tokio::select! {
            r = main_async(opts) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    });
    // Do not wait for stray tasks (e.g. drainers of children's stdout).
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "mcp-warden-bench: some calls failed or mismatched (see `errors`/`mismatches`)"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mcp-warden-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn cli() {
        let o = parse(&[]).ok().flatten();
        assert_eq!(o.as_ref().map(|o| o.settings.calls), Some(2000));
        assert_eq!(o.as_ref().map(|o| o.settings.load_calls), Some(20000));
        let o = parse(&["--quick", "--calls", "50", "--concurrency=4,8"])
            .ok()
            .flatten();
        assert_eq!(o.as_ref().map(|o| o.settings.calls), Some(50));
        assert_eq!(o.as_ref().map(|o| o.settings.load_calls), Some(2000));
        assert_eq!(o.map(|o| o.settings.concurrency), Some(vec![4, 8]));
        assert!(matches!(parse(&["--help"]), Ok(None)));
        assert!(parse(&["--calls", "0"]).is_err());
        assert!(parse(&["--calls"]).is_err());
        assert!(parse(&["--scenario", "C"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn configs_quote_paths() {
        let state = Path::new("/tmp/s");
        let c = warden_config(
            &Upstream::Stdio(Path::new("/a b/\"demo\"")),
            state,
            None,
            "",
        );
        assert!(c.contains(r#"command = "/a b/\"demo\"""#));
        assert!(c.contains(r#"state_dir = "/tmp/s""#));
        assert!(warden_config(
            &Upstream::Http("http://127.0.0.1:1/mcp"),
            state,
            Some("json"),
            ""
        )
        .contains(r#"url = "http://127.0.0.1:1/mcp""#));
    }
}
