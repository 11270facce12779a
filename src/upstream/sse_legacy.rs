//! A legacy HTTP+SSE upstream (protocol 2024-11-05): a long-lived GET event stream whose first
//! `endpoint` event names the URL to POST messages to; every answer arrives on the stream.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::http::{client_with, header_map};
use super::{Inbound, Inlet, Pipe, UpstreamError};
use crate::config::HttpSpec;
use crate::jsonrpc::{self, code, Kind, Message, Payload};
use crate::sse;

const MAX_EVENT: usize = 32 * 1024 * 1024;

pub(super) async fn spawn(
    name: &str,
    spec: &HttpSpec,
    timeout: Duration,
    inlet: Inlet,
) -> Result<Pipe, UpstreamError> {
    let start_err = |reason: String| UpstreamError::Start {
        name: name.to_string(),
        reason,
    };
    let url = reqwest::Url::parse(&spec.url).map_err(|e| start_err(e.to_string()))?;
    let client = client_with(spec.tls.as_ref()).map_err(start_err)?;
    let headers = header_map(spec);
    let mut resp = tokio::time::timeout(
        timeout,
        client
            .get(url.clone())
            .headers(headers.clone())
            .header(ACCEPT, "text/event-stream")
            .send(),
    )
    .await
    .map_err(|_| start_err("no answer to the SSE GET".into()))?
    .map_err(|_| start_err("cannot open the SSE stream".into()))?;
    if !resp.status().is_success() {
        return Err(start_err(format!(
            "SSE GET answered HTTP {}",
            resp.status().as_u16()
        )));
    }
    let mut parser = sse::Parser::new(MAX_EVENT);
    let mut events = Vec::new();
    // Wait for the `endpoint` event; keep anything that came with it.
    let endpoint = tokio::time::timeout(timeout, async {
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    parser.push(&chunk, &mut events);
                    if let Some(i) = events
                        .iter()
                        .position(|e| e.event.as_deref() == Some("endpoint"))
                    {
                        let ev = events.remove(i);
                        return Some(ev.data);
                    }
                }
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| start_err("the SSE stream sent no `endpoint` event".into()))?;
    let post_url = url
        .join(endpoint.trim())
        .map_err(|_| start_err("invalid `endpoint` event".into()))?;
    // The spec requires the endpoint to share the stream's origin; anything else could send our
    // traffic (and configured credentials) elsewhere.
    if post_url.origin() != url.origin() {
        return Err(start_err(
            "the `endpoint` event points to another origin".into(),
        ));
    }

    let (out_tx, mut out_rx) = mpsc::channel::<Message>(256);
    let in_tx = inlet.clone();
    let reader_tx = inlet;
    // Dropped when the reader ends, which stops the writer too, so that the pipe closes and
    // the connection learns the upstream is gone.
    let (reader_done, mut reader_gone) = tokio::sync::oneshot::channel::<()>();
    crate::task::detach(tracing::Span::current(), async move {
        let _done = reader_done;
        let mut pending = events;
        loop {
            for ev in pending.drain(..) {
                if ev.data.is_empty() || !matches!(ev.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let msgs = match jsonrpc::parse_payload(Bytes::from(ev.data)) {
                    Ok(Payload::Single(m)) => vec![m],
                    Ok(Payload::Batch(items)) => items.into_iter().filter_map(Result::ok).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "invalid message on the upstream SSE stream");
                        vec![]
                    }
                };
                for m in msgs {
                    if !reader_tx.deliver(Inbound {
                        msg: m,
                        related: None,
                    }) {
                        return;
                    }
                }
            }
            let chunk = tokio::select! {
                c = resp.chunk() => c,
                _ = reader_tx.closed() => return,
            };
            match chunk {
                Ok(Some(c)) => parser.push(&c, &mut pending),
                _ => {
                    tracing::warn!("upstream SSE stream ended");
                    return; // dropping reader_tx (with the writer's clone gone) ends the pipe
                }
            }
        }
    });
    crate::task::detach(tracing::Span::current(), async move {
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some(msg) => {
                        let (client, url, headers, tx) = (client.clone(), post_url.clone(), headers.clone(), in_tx.clone());
                        tasks.spawn(async move {
                            let r = client.post(url).headers(headers)
                                .header(CONTENT_TYPE, "application/json")
                                .body(msg.bytes().clone()).send().await;
                            let ok = matches!(&r, Ok(r) if r.status().is_success());
                            if !ok && msg.kind() == Kind::Request {
                                let err = jsonrpc::error_response(msg.id_str(), code::UPSTREAM_UNAVAILABLE, "upstream rejected the message");
                                tx.deliver(Inbound { msg: err, related: None });
                            }
                        });
                    }
                    None => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = &mut reader_gone => break,
            }
        }
        tasks.abort_all();
    });
    Ok(Pipe {
        tx: out_tx,
        direct: None,
    })
}
