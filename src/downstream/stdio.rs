//! The stdio front: MCP on stdin/stdout for the one agent that launched us. Nothing but MCP is
//! ever written to stdout (logs go to stderr); EOF on stdin ends the session and its children.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::downstream::modern;
use crate::identity::Caller;
use crate::jsonrpc::{self, code, Kind, LineError, LineReader, Message, Payload};
use crate::mcp;
use crate::session::Session;

/// Serves one agent over `input`/`output` until EOF or `shutdown`.
pub async fn serve<R, W>(
    cfg: Arc<Config>,
    caller: Caller,
    input: R,
    output: W,
    shutdown: impl Future<Output = ()>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // Messages for the agent; batch answers (JSON arrays, not single messages) have their own
    // channel into the same writer.
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(1024);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Bytes>(64);
    let writer = tokio::spawn(async move {
        let mut w = tokio::io::BufWriter::with_capacity(64 * 1024, output);
        loop {
            let first: Bytes = tokio::select! {
                m = out_rx.recv() => match m { Some(m) => m.into_bytes(), None => break },
                Some(b) = batch_rx.recv() => b,
            };
            let mut ok = w.write_all(&first).await.is_ok() && w.write_all(b"\n").await.is_ok();
            // Coalesce whatever is already queued into one flush.
            while ok {
                match out_rx.try_recv() {
                    Ok(m) => {
                        ok =
                            w.write_all(m.bytes()).await.is_ok() && w.write_all(b"\n").await.is_ok()
                    }
                    Err(_) => break,
                }
            }
            if !ok || w.flush().await.is_err() {
                tracing::warn!("stdout closed; stopping");
                break;
            }
        }
    });

    let mut lines = LineReader::new(
        BufReader::with_capacity(64 * 1024, input),
        cfg.proxy.max_line_bytes,
    );
    let mut session: Option<Arc<Session>> = None;
    let shared = Arc::new(crate::instance::Instance::serve(&cfg));
    // A 2026-07-28 agent (its first request says so) is served by its internal session.
    let stateless = Arc::new(modern::Stateless::default());
    let mut modern_conn: Option<Modern> = None;
    // Reloads apply to the live session; `latest` is what a later `initialize` would use.
    let live: Arc<std::sync::Mutex<Option<Arc<Session>>>> = Arc::default();
    let latest = Arc::new(std::sync::Mutex::new(cfg.clone()));
    let _reloader = cfg.source.clone().map(|path| {
        let (live, latest, shared) = (live.clone(), latest.clone(), shared.clone());
        let stateless = stateless.clone();
        crate::task::spawn(
            tracing::info_span!("config-reload"),
            crate::reload::watch(path, move |c| {
                shared.apply(&c);
                stateless.reconfigure(&c, &shared);
                *crate::util::lock(&latest) = c.clone();
                if let Some(s) = crate::util::lock(&live).clone() {
                    s.reconfigure(c, &shared);
                }
            }),
        )
    });
    // Batches being answered: owned here, so none outlives the front.
    let mut batches = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = &mut shutdown => break,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(LineError::TooLong { max, id, request }) => {
                // Answered under the request's id when it could be read, so the agent's call
                // fails now rather than at its own timeout.
                let e = jsonrpc::error_response(
                    id.as_deref().filter(|_| request),
                    code::INVALID_REQUEST,
                    &format!("Message larger than {max} bytes"),
                );
                let _ = out_tx.send(e).await;
                continue;
            }
            Err(LineError::Io(e)) => {
                tracing::warn!(error = %e, "reading stdin failed");
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match jsonrpc::parse_payload(line) {
            Err(e) => {
                let _ = out_tx.send(e.answer()).await;
            }
            Ok(Payload::Single(msg)) => {
                let current = crate::util::lock(&latest).clone();
                if modern_conn.is_none() && session.is_none() && modern::claims_modern(&msg) {
                    let entry = stateless.entry(&current, &caller, None, &shared).await;
                    modern_conn = Some(Modern::new(entry, stateless.clone(), caller.clone()));
                }
                if let Some(m) = &mut modern_conn {
                    m.handle(msg, &out_tx).await;
                    continue;
                }
                if session.is_some() && modern::claims_modern(&msg) {
                    let e = jsonrpc::error_response(
                        msg.id_str(),
                        code::INVALID_REQUEST,
                        "This connection was initialized with a 2025 protocol version: requests carry no protocol version in _meta",
                    );
                    let _ = out_tx.send(e).await;
                    continue;
                }
                if let Some(s) = dispatch(
                    &current,
                    caller.clone(),
                    &shared,
                    &mut session,
                    msg,
                    &out_tx,
                )
                .await
                {
                    *crate::util::lock(&live) = Some(s.clone());
                    session = Some(s);
                }
            }
            Ok(Payload::Batch(items)) => {
                let allowed = session
                    .as_ref()
                    .is_some_and(|s| mcp::allows_batches(s.protocol_version));
                match (&session, allowed) {
                    (Some(s), true) => {
                        while batches.try_join_next().is_some() {}
                        let (s, out, arrays) = (s.clone(), out_tx.clone(), batch_tx.clone());
                        batches.spawn(async move {
                            if let Some(array) = s.batch(items, out).await {
                                let _ = arrays.send(array).await;
                            }
                        });
                    }
                    _ => {
                        let e = jsonrpc::error_response(
                            None,
                            code::INVALID_REQUEST,
                            "JSON-RPC batches are not supported by the negotiated protocol version",
                        );
                        let _ = out_tx.send(e).await;
                    }
                }
            }
        }
    }
    if let Some(s) = session {
        s.drain(cfg.proxy.shutdown_grace).await;
        s.close();
    }
    drop(batches);
    drop(modern_conn);
    stateless.close();
    shared.close();
    shared.flush().await;
    // Nothing may keep the session (and so its sinks) alive past here: the writer ends when
    // every sender is gone.
    drop(_reloader);
    crate::util::lock(&live).take();
    drop(out_tx);
    let _ = writer.await;
}

/// Handles one message; returns a new session when it was an `initialize`.
async fn dispatch(
    cfg: &Arc<Config>,
    caller: Caller,
    shared: &crate::instance::Instance,
    session: &mut Option<Arc<Session>>,
    msg: Message,
    out: &mpsc::Sender<Message>,
) -> Option<Arc<Session>> {
    match (session.as_ref(), msg.kind(), msg.method()) {
        (None, Kind::Request, Some("initialize")) => {
            let (s, reply) = Session::initialize(
                "stdio".into(),
                cfg.clone(),
                caller,
                None,
                shared,
                &msg,
                out.clone(),
            )
            .await;
            let _ = out.send(reply).await;
            Some(s)
        }
        (Some(s), _, _) => {
            s.handle(msg, out.clone());
            None
        }
        (None, Kind::Request, Some("ping")) => {
            let _ = out
                .send(jsonrpc::response(
                    msg.id_str().unwrap_or("null"),
                    serde_json::json!({}),
                ))
                .await;
            None
        }
        (None, Kind::Request, _) => {
            let e = jsonrpc::error_response(
                msg.id_str(),
                code::INVALID_REQUEST,
                "Session not initialized: send initialize first",
            );
            let _ = out.send(e).await;
            None
        }
        (None, _, _) => None,
    }
}

/// The agent a stdio instance serves: the one named with `--agent`, or the config's only agent;
/// with no agents configured, the single local user (every upstream).
pub fn caller_for(cfg: &Config, agent: Option<&str>) -> Result<Caller, String> {
    match (agent, cfg.agents.len()) {
        (Some(name), _) => cfg
            .agents
            .iter()
            .find(|a| a.name == name)
            .map(|a| Caller::Agent(a.name.as_str().into()))
            .ok_or_else(|| format!("no agent named `{name}` in the config")),
        (None, 0) => Ok(Caller::User),
        (None, 1) => Ok(Caller::Agent(
            cfg.agents
                .first()
                .map(|a| a.name.as_str())
                .unwrap_or_default()
                .into(),
        )),
        (None, _) => Err("the config names several agents: choose one with --agent NAME".into()),
    }
}

/// Runs the stdio front on the process's stdin/stdout.
pub async fn run(cfg: Arc<Config>, caller: Caller, shutdown: impl Future<Output = ()>) {
    let (input, output) = std_streams();
    serve(cfg, caller, input, output, shutdown).await;
    crate::upstream::wait_for_children(std::time::Duration::from_secs(5)).await;
}

type Input = Box<dyn AsyncRead + Unpin + Send>;
type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// This process's stdin and stdout as async streams. Pipes and sockets — what an agent launches
/// us with — are driven by the runtime's reactor directly; anything else (a terminal, a file)
/// goes through tokio's blocking-thread adapters. The reactor path saves a hand-off to another
/// thread, and its wake-up, for every line read and every flush.
fn std_streams() -> (Input, Output) {
    use std::os::fd::AsFd;
    let input: Input = match reactor_stream(std::io::stdin().as_fd()) {
        Some(Stream::Pipe(fd)) => match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(r) => Box::new(r),
            Err(_) => Box::new(tokio::io::stdin()),
        },
        Some(Stream::Socket(s)) => Box::new(s),
        None => Box::new(tokio::io::stdin()),
    };
    // Non-blocking mode belongs to the open file, not the descriptor: when stderr is the same
    // pipe as stdout (`2>&1`), our log writes would start failing with EAGAIN. Keep the
    // blocking adapter then.
    let shared_with_stderr = same_file(std::io::stdout().as_fd(), std::io::stderr().as_fd());
    let output: Output = match reactor_stream(std::io::stdout().as_fd()) {
        _ if shared_with_stderr => Box::new(tokio::io::stdout()),
        Some(Stream::Pipe(fd)) => match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
            Ok(w) => Box::new(w),
            Err(_) => Box::new(tokio::io::stdout()),
        },
        Some(Stream::Socket(s)) => Box::new(s),
        None => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

enum Stream {
    Pipe(std::os::fd::OwnedFd),
    Socket(tokio::net::UnixStream),
}

/// A duplicate of `fd` ready for the reactor, if it is a pipe or a socket.
fn reactor_stream(fd: std::os::fd::BorrowedFd<'_>) -> Option<Stream> {
    use nix::sys::stat::{fstat, SFlag};
    let kind = SFlag::from_bits_truncate(fstat(fd).ok()?.st_mode) & SFlag::S_IFMT;
    let owned = fd.try_clone_to_owned().ok()?;
    if kind == SFlag::S_IFIFO {
        return Some(Stream::Pipe(owned));
    }
    if kind == SFlag::S_IFSOCK {
        let s = std::os::unix::net::UnixStream::from(owned);
        s.set_nonblocking(true).ok()?;
        return tokio::net::UnixStream::from_std(s).ok().map(Stream::Socket);
    }
    None
}

fn same_file(a: std::os::fd::BorrowedFd<'_>, b: std::os::fd::BorrowedFd<'_>) -> bool {
    match (nix::sys::stat::fstat(a), nix::sys::stat::fstat(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => true, // when in doubt, the blocking adapter
    }
}

/// A 2026-07-28 agent on stdio: each request validated and served by the caller's internal
/// session; `notifications/cancelled` cancels a request or ends a `subscriptions/listen`.
struct Modern {
    entry: modern::Entry,
    stateless: Arc<modern::Stateless>,
    caller: Caller,
    /// Requests in flight: the agent's id → ours (raw JSON), for its cancellations.
    inflight: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    /// Open `subscriptions/listen` streams, by the agent's id.
    listens: std::collections::HashMap<String, crate::task::Owned>,
    next: u64,
    /// The tasks relaying answers: owned here, so none outlives the front.
    tasks: tokio::task::JoinSet<()>,
}

impl Modern {
    fn new(entry: modern::Entry, stateless: Arc<modern::Stateless>, caller: Caller) -> Modern {
        Modern {
            entry,
            stateless,
            caller,
            inflight: Arc::default(),
            listens: Default::default(),
            next: 0,
            tasks: tokio::task::JoinSet::new(),
        }
    }

    async fn handle(&mut self, msg: Message, out: &mpsc::Sender<Message>) {
        match msg.kind() {
            // A modern agent is never asked anything: nothing to answer.
            Kind::Response => {}
            Kind::Notification => {
                if msg.method() == Some("notifications/cancelled") {
                    self.cancelled(&msg);
                }
            }
            Kind::Request => self.request(msg, out).await,
        }
    }

    fn cancelled(&mut self, msg: &Message) {
        let Some(id) = msg
            .params()
            .and_then(|p| serde_json::from_str::<mcp::CancelledParams<'_>>(p).ok())
            .map(|p| p.request_id.get().to_string())
        else {
            return;
        };
        if self.listens.remove(&id).is_some() {
            return; // the stream ends; nothing more is sent for it
        }
        let internal = crate::util::lock(&self.inflight).get(&id).cloned();
        if let Some(internal) = internal {
            let cancel = jsonrpc::notification(
                "notifications/cancelled",
                Some(serde_json::json!({
                    "requestId": serde_json::from_str::<serde_json::Value>(&internal).unwrap_or_default(),
                    "reason": "cancelled by the client",
                })),
            );
            let (tx, _) = mpsc::channel(1);
            self.entry.session.handle(cancel, tx);
        }
    }

    async fn request(&mut self, msg: Message, out: &mpsc::Sender<Message>) {
        if msg.method() == Some("initialize") {
            // A 2026-07-28 connection is not initialized: say which versions it speaks.
            let requested = msg
                .params()
                .and_then(|p| serde_json::from_str::<mcp::InitializeParams<'_>>(p).ok())
                .and_then(|p| p.protocol_version);
            let r = modern::Refusal {
                code: modern::UNSUPPORTED_VERSION,
                message: "Unsupported protocol version: this connection speaks 2026-07-28".into(),
                data: Some(
                    serde_json::json!({"supported": mcp::MODERN_VERSIONS, "requested": requested}),
                ),
            };
            let _ = out.send(r.answer(msg.id_str())).await;
            return;
        }
        self.next += 1;
        let req = match modern::validate(&msg, None, self.next) {
            Ok(r) => r,
            Err(r) => {
                let _ = out.send(r.answer(msg.id_str())).await;
                return;
            }
        };
        let session = self.entry.session.clone();
        match req.method {
            "server/discover" => {
                let _ = out.send(modern::discover(&session, req.id())).await;
            }
            "subscriptions/listen" => {
                let listen = match modern::Listen::open(&self.entry, &req).await {
                    Ok(l) => l,
                    Err(r) => {
                        let _ = out.send(r.answer(Some(req.id()))).await;
                        return;
                    }
                };
                let _ = out.send(listen.acknowledgement(req.id())).await;
                let mut changes = self.entry.changes.subscribe();
                let (out, id) = (out.clone(), req.id().to_string());
                let task = crate::task::spawn(tracing::debug_span!("listen"), async move {
                    loop {
                        let m = match changes.recv().await {
                            Ok(m) => m,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                jsonrpc::notification("notifications/tools/list_changed", None)
                            }
                            Err(_) => return,
                        };
                        if let Some(n) = listen.relay(&id, &m) {
                            if out.send(n).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                self.listens.insert(req.id().to_string(), task);
            }
            _ => {
                let call = if modern::is_retry(&req) {
                    match self.stateless.resume(&self.caller, req) {
                        Ok(call) if modern::Stateless::still_asking(&call) => {
                            let _ = out
                                .send(self.stateless.park(&self.caller, call, None))
                                .await;
                            return;
                        }
                        Ok(call) => call,
                        Err(r) => {
                            let _ = out.send(r.answer(msg.id_str())).await;
                            return;
                        }
                    }
                } else {
                    modern::Call::start(session, req)
                };
                let agent_id = call.req.id().to_string();
                crate::util::lock(&self.inflight).insert(agent_id.clone(), call.internal_id());
                let (out, inflight) = (out.clone(), self.inflight.clone());
                let (stateless, caller) = (self.stateless.clone(), self.caller.clone());
                while self.tasks.try_join_next().is_some() {}
                self.tasks.spawn(async move {
                    let mut call = call;
                    loop {
                        match call.next().await {
                            modern::Step::Closed => break,
                            modern::Step::Send(m) => {
                                let _ = out.send(m).await;
                            }
                            modern::Step::Answer(m) => {
                                let _ = out.send(m).await;
                                break;
                            }
                            modern::Step::Ask(m) => {
                                let _ = out.send(stateless.park(&caller, call, Some(m))).await;
                                break;
                            }
                        }
                    }
                    crate::util::lock(&inflight).remove(&agent_id);
                });
            }
        }
    }
}
