//! How a POSTed request is answered: one JSON body, or an SSE stream carrying the call's
//! progress, logging and server->client requests before the answer (`response_mode`); what is
//! left when the agent hangs up goes to the session's GET stream.

use super::*;

/// Answers a POST with one JSON body; messages related to the request that come before the
/// answer go to the session's GET stream.
pub(super) async fn respond_json(
    mut rx: mpsc::Receiver<Message>,
    want: String,
    general: mpsc::Sender<Message>,
) -> Response {
    let mut want = vec![want];
    while let Some(b) = rx.recv().await {
        if is_answer(&b, &mut want) {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                b.into_bytes(),
            )
                .into_response();
        }
        let _ = general.try_send(b);
    }
    jsonrpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        code::INTERNAL_ERROR,
        "Request cancelled",
    )
}

/// `auto` mode: the answer alone, as one JSON body, if it is ready within `stream_after` and
/// nothing related (progress, logging, a server→client request) comes before it; an SSE stream
/// otherwise, so that slow calls carry their progress as they go. Quick calls, the
/// great majority, cost one write instead of a chunked stream.
pub(super) async fn respond_auto(
    front: &Front,
    mut rx: mpsc::Receiver<Message>,
    want: String,
    prime: bool,
    stream_after: Duration,
    general: mpsc::Sender<Message>,
) -> Response {
    match tokio::time::timeout(stream_after, rx.recv()).await {
        Ok(Some(b)) if b.kind() == Kind::Response && b.id_str().unwrap_or("null") == want => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b.into_bytes(),
        )
            .into_response(),
        Ok(Some(related)) => respond_sse(front, rx, vec![want], prime, Some(related), general),
        Ok(None) => jsonrpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            code::INTERNAL_ERROR,
            "Request cancelled",
        ),
        Err(_) => respond_sse(front, rx, vec![want], prime, None, general),
    }
}

/// Answers a POST with an SSE stream: every message related to the request (`first`, if one
/// already arrived, then what `rx` brings), ending with its answer. Events carry ids
/// (`p<stream>-<n>`); a 2025-11-25 client first gets a priming event (an id, `retry`, empty
/// data). If the client goes away before the answer, the rest — the answer included — goes to
/// the session's GET stream, where a client that reconnects (SEP-1699) or already listens
/// finds it.
pub(super) fn respond_sse(
    front: &Front,
    rx: mpsc::Receiver<Message>,
    mut want: Vec<String>,
    prime: bool,
    first: Option<Message>,
    general: mpsc::Sender<Message>,
) -> Response {
    let stream_id = front
        .inner
        .next_stream
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut queued: VecDeque<Bytes> = VecDeque::with_capacity(2);
    if prime {
        queued.push_back(Bytes::from(format!(
            "id: p{stream_id}-0\nretry: 1000\ndata: \n\n"
        )));
    }
    let mut done = false;
    if let Some(m) = first {
        done = is_answer(&m, &mut want) && want.is_empty();
        queued.push_back(Bytes::from(sse::encode(
            Some(&format!("p{stream_id}-1")),
            m.bytes(),
        )));
    }
    let n = queued.len() as u64 + u64::from(!prime);
    let rest = Rest {
        rx: Some(rx),
        want,
        general,
        complete: false,
    };
    let state = (queued, rest, done, n);
    let stream =
        futures_util::stream::unfold(state, move |(mut queued, mut rest, done, n)| async move {
            if let Some(ev) = queued.pop_front() {
                return Some((
                    Ok::<_, std::convert::Infallible>(ev),
                    (queued, rest, done, n),
                ));
            }
            if done {
                rest.finish();
                return None;
            }
            let b = rest.rx.as_mut()?.recv().await?;
            let finished = is_answer(&b, &mut rest.want) && rest.want.is_empty();
            let event = Bytes::from(sse::encode(Some(&format!("p{stream_id}-{n}")), b.bytes()));
            Some((Ok(event), (queued, rest, finished, n + 1)))
        });
    sse_response(Body::from_stream(stream))
}

/// What a POST stream has yet to carry. Dropped before its answer went out (the client
/// disconnected), it hands the rest to the session's general stream.
pub(super) struct Rest {
    pub(super) rx: Option<mpsc::Receiver<Message>>,
    pub(super) want: Vec<String>,
    pub(super) general: mpsc::Sender<Message>,
    pub(super) complete: bool,
}

impl Rest {
    /// The answer went out: nothing to hand over.
    pub(super) fn finish(&mut self) {
        self.complete = true;
    }
}

impl Drop for Rest {
    fn drop(&mut self) {
        if self.complete {
            return;
        }
        let (Some(mut rx), Ok(rt)) = (self.rx.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let general = self.general.clone();
        let mut want = std::mem::take(&mut self.want);
        tracing::debug!("POST stream closed before its answer; the rest goes to the GET stream");
        rt.spawn(async move {
            while let Some(m) = rx.recv().await {
                let last = is_answer(&m, &mut want) && want.is_empty();
                if general.send(m).await.is_err() || last {
                    break;
                }
            }
        });
    }
}

pub(super) fn is_answer(m: &Message, want: &mut Vec<String>) -> bool {
    if m.kind() != Kind::Response {
        return false;
    }
    let id = m.id_str().unwrap_or("null");
    match want.iter().position(|w| w == id) {
        Some(i) => {
            want.swap_remove(i);
            true
        }
        None => false,
    }
}

pub(super) fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        axum::http::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    resp
}
