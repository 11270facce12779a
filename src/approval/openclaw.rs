//! The OpenClaw approval channel: a held call becomes a *plugin approval* on an OpenClaw
//! gateway, so that the people who already approve things in OpenClaw (its approval clients,
//! and `/approve <id>` in its chats) decide it too. The first decision from any channel wins;
//! when the call is decided elsewhere, cancelled or expired, the OpenClaw approval is closed
//! (resolved by mcp-warden itself, as OpenClaw has no cancel).
//!
//! The gateway protocol (version 4, JSON text frames): the gateway sends `connect.challenge`;
//! the client's first request is `connect` (as a loopback backend client, role `operator`,
//! scope `operator.approvals`, the gateway's token); then `plugin.approval.request` with
//! `twoPhase`, answered once with `accepted` and again, under the same request id, with the
//! decision. An approval can only be resolved from the connection that opened it, so each one
//! keeps its own connection until it is closed.
//!
//! Owns: the gateway conversation. Must not: decide anything itself, or carry the
//! `action_id` (the approval shows the agent, server, tool, summary and the argument digest).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::{ApprovalInfo, Decision};
use crate::config::OpenClawChannel;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// OpenClaw accepts approvals of at most ten minutes.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// OpenClaw's approval outlives mcp-warden's hold by this much, so that mcp-warden's expiry
/// (the one that counts) closes it, rather than both expiring at once.
const OUTLIVE: Duration = Duration::from_secs(5);
/// How long closing an approval may take before the connection is dropped anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// One open OpenClaw approval. Its decision, if a reviewer takes one, comes from
/// [`Ticket::decision`]; dropping it closes the approval on the gateway with the decision taken
/// elsewhere ([`Ticket::settle`]), or with `deny`.
pub struct Ticket {
    decided: Option<oneshot::Receiver<Decision>>,
    close: Option<oneshot::Sender<Decision>>,
    settled: Decision,
    /// OpenClaw's id of the approval (`plugin:<uuid>`), as its chats' `/approve` takes it.
    pub id: String,
}

impl Ticket {
    /// The decision a reviewer took in OpenClaw. Never resolves when OpenClaw gives none (its
    /// own timeout, or the connection lost): the other channels still can.
    pub async fn decision(&mut self) -> Decision {
        match self.decided.as_mut() {
            Some(rx) => match rx.await {
                Ok(d) => d,
                Err(_) => {
                    self.decided = None;
                    std::future::pending().await
                }
            },
            None => std::future::pending().await,
        }
    }

    /// The decision taken elsewhere, shown on OpenClaw when the approval is closed.
    pub fn settle(&mut self, decision: Decision) {
        self.settled = decision;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(close) = self.close.take() {
            let _ = close.send(self.settled);
        }
    }
}

/// Opens an approval for `info` on the gateway. `Err`: the gateway cannot be reached, refused
/// us, or has nobody to ask (no approval client connected): no human will hear of the call
/// through OpenClaw, so the caller fails closed.
pub async fn open(
    ch: &OpenClawChannel,
    info: &ApprovalInfo,
    expiry: Duration,
) -> Result<Ticket, String> {
    let opening = async {
        let mut ws = connect(ch).await?;
        let params = json!({
            "title": truncate(&format!("{} → {}/{}", info.agent, info.upstream, info.tool), 80),
            "description": truncate(&info.summary, 512),
            "detail": truncate(
                &format!(
                    "mcp-warden holds this call until a human decides.\nagent: {}\nserver: {}\ntool: {}\narguments: {}\narguments sha256: {}\nmcp-warden approval: {}",
                    info.agent, info.upstream, info.tool, info.arguments, info.arguments_sha256, info.id
                ),
                16384,
            ),
            "severity": "warning",
            "pluginId": "mcp-warden",
            "toolName": truncate(&info.tool, 200),
            "agentId": truncate(&info.agent, 200),
            "allowedDecisions": ["allow-once", "allow-always", "deny"],
            "timeoutMs": (expiry + OUTLIVE).min(MAX_TIMEOUT).as_millis() as u64,
            "twoPhase": true,
        });
        send(&mut ws, "approval", "plugin.approval.request", params).await?;
        let first = answer(&mut ws, "approval").await?;
        if first["status"] == "accepted" {
            let id = first["id"].as_str().unwrap_or_default().to_string();
            return Ok((ws, id));
        }
        // Answered at once without `accepted`: OpenClaw had nobody to ask.
        Err("the OpenClaw gateway has no approval client connected to ask".to_string())
    };
    let (ws, id) = tokio::time::timeout(ch.connect_timeout, opening)
        .await
        .map_err(|_| "the OpenClaw gateway did not answer in time".to_string())??;
    let (decided_tx, decided) = oneshot::channel();
    let (close, closing) = oneshot::channel();
    let span = tracing::info_span!("openclaw", approval = %info.id, openclaw = %id);
    crate::task::detach(span, keep(ws, id.clone(), decided_tx, closing));
    tracing::info!(approval = %info.id, openclaw = %id, "held call opened as an OpenClaw approval");
    Ok(Ticket {
        decided: Some(decided),
        close: Some(close),
        settled: Decision::Deny,
        id,
    })
}

/// Holds the approval's connection: a decision from OpenClaw goes to `decided`; when the
/// ticket closes first, the approval is resolved on the gateway with the decision taken
/// elsewhere. Ends either way (bounded: the close waits at most [`CLOSE_WAIT`]).
async fn keep(
    mut ws: Socket,
    id: String,
    decided: oneshot::Sender<Decision>,
    mut closing: oneshot::Receiver<Decision>,
) {
    let from_openclaw = loop {
        tokio::select! {
            frame = ws.next() => match frame.map(|f| f.map(read)) {
                Some(Ok(Some(v))) if v["type"] == "res" && v["id"] == "approval" => {
                    match v["payload"]["decision"].as_str().and_then(|d| d.parse::<Decision>().ok()) {
                        Some(d) => break Some(d),
                        // Expired on OpenClaw's side: it has no decision to give.
                        None => break None,
                    }
                }
                Some(Ok(_)) => {} // ticks, pings (answered by the library), other frames
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the OpenClaw gateway connection failed; it no longer decides this call");
                    return;
                }
                None => {
                    tracing::warn!("the OpenClaw gateway closed the connection; it no longer decides this call");
                    return;
                }
            },
            settled = &mut closing => {
                let decision = settled.unwrap_or(Decision::Deny);
                close(&mut ws, &id, decision).await;
                return;
            }
        }
    };
    match from_openclaw {
        Some(d) => {
            tracing::info!(decision = d.as_str(), "decided in OpenClaw");
            let _ = decided.send(d);
        }
        None => tracing::info!("the OpenClaw approval expired without a decision"),
    }
    let _ = ws.close(None).await;
}

/// Resolves the approval from its own connection (decided elsewhere, cancelled or expired in
/// mcp-warden), so that OpenClaw's reviewers see it closed.
async fn close(ws: &mut Socket, id: &str, decision: Decision) {
    let closing = async {
        send(
            ws,
            "close",
            "plugin.approval.resolve",
            json!({"id": id, "decision": decision.as_str()}),
        )
        .await?;
        // Any answer will do: "already resolved" means it is closed too.
        let _ = answer(ws, "close").await;
        Ok::<(), String>(())
    };
    if let Err(e) = tokio::time::timeout(CLOSE_WAIT, closing)
        .await
        .unwrap_or_else(|_| Err("no answer".into()))
    {
        tracing::warn!(error = %e, "could not close the OpenClaw approval; it stays until its timeout");
    }
    let _ = ws.close(None).await;
}

/// Connects and signs in (`connect`), checking that the gateway granted the scope.
async fn connect(ch: &OpenClawChannel) -> Result<Socket, String> {
    let tls = crate::tls::client_config(None)?;
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(tls));
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        ch.url.as_str(),
        None,
        false,
        Some(connector),
    )
    .await
    .map_err(|e| format!("cannot reach the OpenClaw gateway: {e}"))?;
    // The gateway speaks first (a challenge a device signature would answer; a backend client
    // signed in by token on loopback needs none).
    loop {
        let v = next_json(&mut ws).await?;
        if v["type"] == "event" && v["event"] == "connect.challenge" {
            break;
        }
    }
    let hello = json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {
            "id": "gateway-client",
            "version": env!("CARGO_PKG_VERSION"),
            "platform": std::env::consts::OS,
            "mode": "backend",
            "displayName": "mcp-warden",
        },
        "role": "operator",
        "scopes": ["operator.approvals"],
        "caps": [],
        "auth": {"token": ch.token.expose()},
    });
    send(&mut ws, "connect", "connect", hello).await?;
    let ok = answer(&mut ws, "connect").await?;
    let granted = ok["auth"]["scopes"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == "operator.approvals"));
    if !granted {
        return Err("the OpenClaw gateway did not grant the operator.approvals scope".into());
    }
    Ok(ws)
}

async fn send(ws: &mut Socket, id: &str, method: &str, params: Value) -> Result<(), String> {
    let frame = json!({"type": "req", "id": id, "method": method, "params": params});
    ws.send(Frame::text(frame.to_string()))
        .await
        .map_err(|e| format!("OpenClaw gateway connection failed: {e}"))
}

/// The payload of the response to request `id` (an error response is `Err`, with the gateway's
/// message).
async fn answer(ws: &mut Socket, id: &str) -> Result<Value, String> {
    loop {
        let v = next_json(ws).await?;
        if v["type"] != "res" || v["id"] != id {
            continue;
        }
        if v["ok"] == true {
            return Ok(v["payload"].clone());
        }
        let message = v["error"]["message"].as_str().unwrap_or("refused");
        return Err(format!("the OpenClaw gateway refused: {message}"));
    }
}

async fn next_json(ws: &mut Socket) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(f)) => {
                if let Some(v) = read(f) {
                    return Ok(v);
                }
            }
            Some(Err(e)) => return Err(format!("OpenClaw gateway connection failed: {e}")),
            None => return Err("the OpenClaw gateway closed the connection".into()),
        }
    }
}

/// A text frame's JSON (other frames: `None`).
fn read(f: Frame) -> Option<Value> {
    match f {
        Frame::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}

/// At most `max` characters (OpenClaw refuses longer fields).
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
