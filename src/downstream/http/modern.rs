//! MCP 2026-07-28 requests on the HTTP endpoint: validated with their headers, served by the
//! caller's internal session, answered as one JSON body or an SSE stream without event ids;
//! closing the stream before the answer cancels the request. `subscriptions/listen` is a
//! long-lived stream of the caller's list changes. GET and DELETE are 405 for a modern client.

use super::*;
use crate::downstream::modern::{self, Refusal};
use crate::session::Session;

/// Whether a POST is for the modern path: its body says so, or its `MCP-Protocol-Version`
/// names a revision that is not a legacy one (so that a version not served gets the
/// structured refusal).
pub(super) fn is_modern(headers: &HeaderMap, msg: &Message) -> bool {
    // The header first: a modern client sends it with every request, and reading it costs
    // less than looking into the body.
    headers
        .get(&*PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(mcp::is_modern)
        || modern::claims_modern(msg)
}

/// A GET or DELETE from a modern client: the revision has no session and no GET stream.
pub(super) fn method_not_allowed(headers: &HeaderMap) -> Option<Response> {
    let v = headers.get(HEADER_PROTOCOL_VERSION)?.to_str().ok()?;
    if !mcp::is_modern(v) {
        return None;
    }
    let mut r = jsonrpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        code::INVALID_REQUEST,
        "Method Not Allowed: 2026-07-28 has no session stream; POST requests",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    Some(r)
}

// The version header, parsed once (a name given as text is parsed at every lookup).
static PROTOCOL_VERSION: std::sync::LazyLock<header::HeaderName> =
    std::sync::LazyLock::new(|| header::HeaderName::from_static(mcp::HEADER_PROTOCOL_VERSION));

fn refused(r: &Refusal, id: Option<&str>) -> Response {
    json_answer(r.answer(id))
}

/// One JSON answer, its status from its error code (the specification's table).
fn json_answer(m: Message) -> Response {
    let status = m
        .error()
        .and_then(|e| serde_json::from_str::<ErrorCode>(e).ok())
        .map_or(200, |e| modern::http_status(e.code));
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        m.into_bytes(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct ErrorCode {
    code: i64,
}

pub(super) async fn post(
    front: &Front,
    caller: Caller,
    subject: Option<crate::identity::SubjectToken>,
    headers: &HeaderMap,
    msg: Message,
) -> Response {
    if msg.kind() != Kind::Request {
        // 2026-07-28 defines no client notification over HTTP: accepted and dropped.
        return StatusCode::ACCEPTED.into_response();
    }
    // The three routing headers every request carries, found in one pass over the headers
    // (cheaper than three lookups); a header sent twice, or not text, is an `Err`.
    let mut routing: [Result<Option<&str>, ()>; 3] = [Ok(None), Ok(None), Ok(None)];
    for (name, value) in headers {
        // By the name's text: a match on strings tests lengths first, cheaper than comparing
        // each name with three `HeaderName`s.
        let slot = match name.as_str() {
            mcp::HEADER_PROTOCOL_VERSION => &mut routing[0],
            mcp::HEADER_METHOD => &mut routing[1],
            mcp::HEADER_NAME => &mut routing[2],
            _ => continue,
        };
        *slot = match slot {
            Ok(None) => value.to_str().map(Some).map_err(|_| ()),
            _ => Err(()),
        };
    }
    let get = |name: &str| -> Result<Option<&str>, ()> {
        match name {
            mcp::HEADER_PROTOCOL_VERSION => routing[0],
            mcp::HEADER_METHOD => routing[1],
            mcp::HEADER_NAME => routing[2],
            other => {
                let name = header::HeaderName::from_bytes(other.as_bytes()).map_err(|_| ())?;
                let mut all = headers.get_all(name).iter();
                match (all.next(), all.next()) {
                    (None, _) => Ok(None),
                    (Some(v), None) => v.to_str().map(Some).map_err(|_| ()),
                    _ => Err(()),
                }
            }
        }
    };
    let n = front
        .inner
        .next_stream
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let routing = modern::Headers { get: &get };
    let req = match modern::validate(&msg, Some(&routing), n) {
        Ok(r) => r,
        Err(r) => return refused(&r, msg.id_str()),
    };
    let entry = front
        .inner
        .stateless
        .entry(&front.cfg(), &caller, subject, &front.inner.shared)
        .await;
    if entry.session.needs_front_origin() {
        // The front as this caller reaches it (its Host passed the guard).
        if let Some(origin) = front.cfg().proxy.origin(headers) {
            entry.session.set_front_origin(origin);
        }
    }
    match req.method {
        "server/discover" => json_answer(modern::discover(&entry.session, req.id())),
        "subscriptions/listen" => listen(front, &entry, &req).await,
        _ if modern::is_retry(&req) => match front.inner.stateless.resume(&caller, req) {
            Ok(call) if modern::Stateless::still_asking(&call) => {
                json_answer(front.inner.stateless.park(&caller, call, None))
            }
            Ok(call) => respond(front, caller, call).await,
            Err(r) => refused(&r, msg.id_str()),
        },
        _ => {
            if req.method == "tools/call" {
                if let Err(r) = modern::check_param_headers(&entry.session, &req, &routing).await {
                    return refused(&r, msg.id_str());
                }
            }
            let call = modern::Call::start(entry.session.clone(), req);
            respond(front, caller, call).await
        }
    }
}

/// The answer to a modern request: JSON if it comes alone within `stream_after`, else an SSE
/// stream of its progress (and log messages it asked for) ending with it. When the upstream
/// asks the agent something, the answer is an `input_required` result and the call waits,
/// parked, for the agent's retry.
async fn respond(front: &Front, caller: Caller, call: modern::Call) -> Response {
    let mut guard = Cancel {
        session: call.session.clone(),
        internal: call.req.msg.clone(),
        done: false,
    };
    let mut call = Some(call);
    // `response_mode`: `json` waits for the answer alone (progress is dropped: a modern
    // client has no other stream to receive it on), `sse` streams at once, `auto` streams when
    // the answer is not ready within `stream_after` or something related comes first.
    let cfg = front.cfg();
    let now = tokio::time::Instant::now();
    let (deadline, json_only) = match cfg.proxy.response_mode {
        ResponseMode::Json => (now + Duration::from_secs(365 * 24 * 3600), true),
        ResponseMode::Sse => (now, false),
        ResponseMode::Auto => (now + cfg.proxy.stream_after, false),
    };
    let first = loop {
        let Some(c) = call.as_mut() else {
            return jsonrpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL_ERROR,
                "Internal error",
            );
        };
        let step = match tokio::time::timeout_at(deadline, c.next()).await {
            Ok(s) => s,
            Err(_) => break None,
        };
        match step {
            modern::Step::Closed => {
                guard.done = true;
                return jsonrpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code::INTERNAL_ERROR,
                    "Request cancelled",
                );
            }
            modern::Step::Answer(m) => {
                guard.done = true;
                return json_answer(m);
            }
            modern::Step::Ask(m) => {
                guard.done = true;
                let Some(c) = call.take() else { break None };
                return json_answer(front.inner.stateless.park(&caller, c, Some(m)));
            }
            modern::Step::Send(_) if json_only => {}
            modern::Step::Send(m) => break Some(m),
        }
    };
    let queued: VecDeque<Message> = first.into_iter().collect();
    let state = (queued, call, guard, front.clone(), caller);
    let stream = futures_util::stream::unfold(
        state,
        |(mut queued, mut call, mut guard, front, caller)| async move {
            if guard.done {
                return None;
            }
            let m = match queued.pop_front() {
                Some(m) => m,
                None => {
                    let step = call.as_mut()?.next().await;
                    match step {
                        modern::Step::Closed => return None,
                        modern::Step::Send(m) | modern::Step::Answer(m) => m,
                        modern::Step::Ask(m) => {
                            let c = call.take()?;
                            front.inner.stateless.park(&caller, c, Some(m))
                        }
                    }
                }
            };
            guard.done = m.kind() == Kind::Response;
            let event = Bytes::from(sse::encode(None, m.bytes()));
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (queued, call, guard, front, caller),
            ))
        },
    );
    sse_response(Body::from_stream(stream))
}

/// Cancels a modern request in the session when its answer can no longer reach the agent
/// (the client closed the stream: 2026-07-28's cancellation). A call parked for the agent's
/// input is not cancelled: it waits for the retry (or its expiry).
struct Cancel {
    session: Arc<Session>,
    /// The request as the session serves it (its id is ours).
    internal: Message,
    done: bool,
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let internal = self.internal.id_str().unwrap_or("null");
        tracing::debug!(request = %internal, "the client closed the stream: request cancelled");
        modern::cancel(&self.session, internal, "the client closed the stream");
    }
}

/// `subscriptions/listen`: the acknowledgement first, then each change of the caller's lists
/// (and update of its subscribed resources) it asked for, tagged with its id, until the
/// client closes the stream; when mcp-warden shuts down, the listen's own answer ends it.
async fn listen(front: &Front, entry: &modern::Entry, req: &modern::Request) -> Response {
    let listen = match modern::Listen::open(entry, req).await {
        Ok(l) => l,
        Err(r) => return refused(&r, Some(req.id())),
    };
    let ack = Bytes::from(sse::encode(None, listen.acknowledgement(req.id()).bytes()));
    let rx = entry.changes.subscribe();
    let id = req.id().to_string();
    let stopping = front.inner.stopping.clone();
    let event =
        |m: &Message| Ok::<_, std::convert::Infallible>(Bytes::from(sse::encode(None, m.bytes())));
    let state = (Some(ack), rx, listen, id, stopping);
    let stream = futures_util::stream::unfold(
        state,
        move |(first, mut rx, listen, id, mut stopping)| async move {
            if let Some(ack) = first {
                return Some((Ok(ack), (None, rx, listen, id, stopping)));
            }
            if *stopping.borrow() {
                return None;
            }
            loop {
                let m = tokio::select! {
                    m = rx.recv() => m,
                    _ = stopping.changed() => {
                        let done = listen.ending(&id);
                        return Some((event(&done), (None, rx, listen, id, stopping)));
                    }
                };
                let n = match m {
                    Ok(m) => listen.relay(&id, &m),
                    // A change missed is still a change: say the lists changed.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let all = jsonrpc::notification("notifications/tools/list_changed", None);
                        listen.relay(&id, &all)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                if let Some(n) = n {
                    return Some((event(&n), (None, rx, listen, id, stopping)));
                }
            }
        },
    );
    sse_response(Body::from_stream(stream))
}
