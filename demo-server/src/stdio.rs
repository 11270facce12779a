//! The stdio transport: newline-delimited JSON-RPC on stdin/stdout.
//!
//! Two plain threads do the blocking I/O: one reads stdin lines into a channel, one drains a
//! channel into stdout (batching and flushing whenever the channel runs dry), so every write to
//! stdout goes through one place. Quick requests are answered inline, in order; requests that may
//! take long or wait on the client run in their own task, cancellable with
//! `notifications/cancelled`. Stdin EOF ends the server after flushing what was already answered.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::peer::{ClientRequests, Outbox, Peer};
use crate::rpc::{self, Incoming, Inflight, RpcError};
use crate::server::Server;

/// Runs the stdio server until stdin reaches EOF.
pub fn run(server: Server) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-warden-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(64);
    let writer = match std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || write_loop(out_rx))
    {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("mcp-warden-demo: cannot start the stdout thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The reader ends by itself at EOF (or once nobody listens), so it is not joined.
    if let Err(e) = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_loop(in_tx))
    {
        eprintln!("mcp-warden-demo: cannot start the stdin thread: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "mcp-warden-demo {}: serving MCP on stdio",
        env!("CARGO_PKG_VERSION")
    );
    runtime.block_on(serve(Arc::new(server), in_rx, out_tx));
    // Dropping the runtime drops every remaining task and with them the last senders, so the
    // writer drains what is queued and stops.
    drop(runtime);
    if writer.join().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn read_loop(tx: mpsc::Sender<Vec<u8>>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("mcp-warden-demo: reading stdin failed: {e}");
                return;
            }
        }
    }
}

fn write_loop(mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let write_line = |out: &mut std::io::BufWriter<_>, msg: &[u8]| {
        out.write_all(msg)?;
        out.write_all(b"\n")
    };
    while let Some(msg) = rx.blocking_recv() {
        let mut res = write_line(&mut out, &msg);
        // Batch whatever else is already queued into the same flush.
        while res.is_ok() {
            match rx.try_recv() {
                Ok(msg) => res = write_line(&mut out, &msg),
                Err(_) => break,
            }
        }
        if let Err(e) = res.and_then(|()| out.flush()) {
            eprintln!("mcp-warden-demo: writing stdout failed: {e}");
            return;
        }
    }
}

/// Serves one client until its input ends.
async fn serve(server: Arc<Server>, mut lines: mpsc::Receiver<Vec<u8>>, out: Outbox) {
    let requests = Arc::new(ClientRequests::default());
    let inflight = Arc::new(Inflight::default());
    let peer = Peer::stdio(out.clone(), Arc::clone(&requests));
    while let Some(line) = lines.recv().await {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let message = match serde_json::from_slice::<Value>(line) {
            Ok(value) => rpc::classify(value),
            Err(e) => {
                let error = RpcError::new(rpc::PARSE_ERROR, format!("Parse error: {e}"));
                let _ = out.send(rpc::encode_error(&Value::Null, &error));
                continue;
            }
        };
        match message {
            Incoming::Request { id, method, params } => {
                if Server::is_long_running(&method, params.as_ref()) {
                    let mut ticket = inflight.register(&id);
                    let server = Arc::clone(&server);
                    let peer = peer.clone();
                    let out = out.clone();
                    tokio::spawn(async move {
                        let outcome = tokio::select! {
                            biased;
                            () = ticket.cancelled() => return,
                            outcome = server.handle_request(&method, params, &peer) => outcome,
                        };
                        // No response for a request cancelled meanwhile.
                        if ticket.finish() {
                            let _ = out.send(rpc::encode_response(&id, &outcome));
                        }
                    });
                } else {
                    let outcome = server.handle_request(&method, params, &peer).await;
                    let _ = out.send(rpc::encode_response(&id, &outcome));
                }
            }
            Incoming::Notification { method, params } => {
                if method == "notifications/cancelled" {
                    if let Some(id) = params.as_ref().and_then(|p| p.get("requestId")) {
                        inflight.cancel(id);
                    }
                }
                // Everything else (initialized, roots/list_changed, ...) needs no action.
            }
            Incoming::Response { id, outcome } => {
                if !requests.resolve(&id, outcome) {
                    eprintln!("mcp-warden-demo: ignoring a response to unknown request {id}");
                }
            }
            Incoming::Invalid { id, reason } => {
                let error =
                    RpcError::new(rpc::INVALID_REQUEST, format!("Invalid Request: {reason}"));
                let _ = out.send(rpc::encode_error(&id, &error));
            }
        }
    }
    // Input ended: stop whatever is still running; its answers would have nowhere to go.
    inflight.cancel_all();
}
