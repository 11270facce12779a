//! The MCP endpoint's methods: POST (messages; `initialize` creates a session), GET (the
//! session's stream for messages not tied to a request, resumable), DELETE (ends a session).

use super::*;

pub(super) async fn post(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (caller, subject) = match front.caller(&headers, peer).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return jsonrpc_error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: Accept must include application/json and text/event-stream",
        );
    }
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !ct_ok {
        return jsonrpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let payload = match jsonrpc::parse_payload(body) {
        Ok(p) => p,
        Err(e) => {
            let msg = e.answer();
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                msg.into_bytes(),
            )
                .into_response();
        }
    };
    if let Payload::Single(msg) = &payload {
        if super::modern::is_modern(&headers, msg) {
            return super::modern::post(&front, caller, subject, &headers, msg.clone()).await;
        }
        if msg.kind() == Kind::Request && msg.method() == Some("initialize") {
            return initialize(&front, msg, caller, subject, &headers).await;
        }
    }
    let hs = match front.session_for(&headers, caller) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = version_error(&headers) {
        return r;
    }
    if let Some(t) = subject {
        hs.session.set_subject(t);
    }
    match payload {
        Payload::Single(msg) => {
            if msg.kind() != Kind::Request {
                hs.session.handle(msg, general_sink(&hs));
                return StatusCode::ACCEPTED.into_response();
            }
            let want = msg.id_str().unwrap_or("null").to_string();
            let (tx, rx) = mpsc::channel::<Message>(64);
            hs.session.handle(msg, tx);
            // Priming events (SEP-1699) are for clients that speak 2025-11-25 on this request.
            let version = headers
                .get(HEADER_PROTOCOL_VERSION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(mcp::DEFAULT_HTTP_VERSION);
            let prime = version >= "2025-11-25";
            let cfg = front.cfg();
            match cfg.proxy.response_mode {
                ResponseMode::Json => respond_json(rx, want, general_sink(&hs)).await,
                ResponseMode::Sse => {
                    respond_sse(&front, rx, vec![want], prime, None, general_sink(&hs))
                }
                ResponseMode::Auto => {
                    let general = general_sink(&hs);
                    respond_auto(&front, rx, want, prime, cfg.proxy.stream_after, general).await
                }
            }
        }
        Payload::Batch(items) => {
            if !mcp::allows_batches(hs.session.protocol_version) {
                return jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_REQUEST,
                    "JSON-RPC batches are not supported by the negotiated protocol version",
                );
            }
            match hs.session.batch(items, general_sink(&hs)).await {
                None => StatusCode::ACCEPTED.into_response(),
                Some(array) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    array,
                )
                    .into_response(),
            }
        }
    }
}

pub(super) fn general_sink(hs: &HttpSession) -> mpsc::Sender<Message> {
    hs.session_general.clone()
}

pub(super) async fn initialize(
    front: &Front,
    msg: &Message,
    caller: Caller,
    subject: Option<crate::identity::SubjectToken>,
    headers: &HeaderMap,
) -> Response {
    let max = front.cfg().proxy.max_sessions_per_agent;
    let open = lock(&front.inner.sessions)
        .values()
        .filter(|s| s.caller == caller && !s.session.is_closed())
        .count();
    if open >= max {
        tracing::warn!(caller = ?caller, open, "session refused: too many open sessions for this caller");
        return jsonrpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            code::INVALID_REQUEST,
            &format!("Too many open sessions (at most {max}); end one with DELETE"),
        );
    }
    let Some(sid) = crate::downstream::new_session_id() else {
        return failure_response(
            &crate::error::Failure::Internal,
            &"no randomness from the operating system for a session id",
        );
    };
    let (general_tx, general_rx) = mpsc::channel::<Message>(REPLAY);
    let (session, reply) = Session::initialize(
        sid.clone(),
        front.cfg(),
        caller.clone(),
        subject,
        &front.inner.shared,
        msg,
        general_tx.clone(),
    )
    .await;
    // The front as this agent reaches it (its Host passed the guard): where the pages it may
    // be pointed at for upstream sign-ins are.
    if let Some(origin) = front.cfg().proxy.origin(headers) {
        session.set_front_origin(origin);
    }
    let hs = Arc::new(HttpSession {
        session,
        caller,
        session_general: general_tx,
        outbox: Arc::new(Mutex::new(Outbox {
            rx: Some(general_rx),
            history: VecDeque::new(),
            next_event: 1,
        })),
    });
    lock(&front.inner.sessions).insert(sid.clone(), hs);
    tracing::info!(session = %sid, "session created");
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        reply.into_bytes(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&sid) {
        resp.headers_mut().insert(HEADER_SESSION_ID, v);
    }
    resp
}

pub(super) async fn get(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
) -> Response {
    let (caller, _) = match front.caller(&headers, peer).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(r) = super::modern::method_not_allowed(&headers) {
        return r;
    }
    if !accepts(&headers, "text/event-stream") {
        return jsonrpc_error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: Accept must include text/event-stream",
        );
    }
    let hs = match front.session_for(&headers, caller) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = version_error(&headers) {
        return r;
    }
    let last: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix('g'))
        .and_then(|n| n.parse().ok());
    let (rx, replay) = {
        let mut ob = lock(&hs.outbox);
        let Some(rx) = ob.rx.take() else {
            return jsonrpc_error(
                StatusCode::CONFLICT,
                code::INVALID_REQUEST,
                "Conflict: this session already has an open GET stream",
            );
        };
        let replay: Vec<(u64, Bytes)> = match last {
            Some(n) => ob
                .history
                .iter()
                .filter(|(id, _)| *id > n)
                .cloned()
                .collect(),
            None => vec![],
        };
        (rx, replay)
    };
    let lease = Lease {
        outbox: hs.outbox.clone(),
        rx: Some(rx),
    };
    let stopping = front.inner.stopping.clone();
    let session = hs.session.clone();
    let outbox = hs.outbox.clone();
    let replay: VecDeque<(u64, Bytes)> = replay.into();
    let stream = futures_util::stream::unfold(
        (lease, replay, stopping),
        move |(mut lease, mut replay, mut stopping)| {
            let session = session.clone();
            let outbox = outbox.clone();
            async move {
                if let Some((id, b)) = replay.pop_front() {
                    let ev = Bytes::from(sse::encode(Some(&format!("g{id}")), &b));
                    return Some((
                        Ok::<_, std::convert::Infallible>(ev),
                        (lease, replay, stopping),
                    ));
                }
                if *stopping.borrow() || session.is_closed() {
                    return None;
                }
                let rx = lease.rx.as_mut()?;
                let next = tokio::select! {
                    m = rx.recv() => m.map(Some),
                    _ = tokio::time::sleep(KEEPALIVE) => Some(None),
                    _ = stopping.changed() => None,
                };
                session.touch();
                match next? {
                    Some(b) => {
                        let id = {
                            let mut ob = lock(&outbox);
                            let id = ob.next_event;
                            ob.next_event += 1;
                            ob.history.push_back((id, b.bytes().clone()));
                            if ob.history.len() > REPLAY {
                                ob.history.pop_front();
                            }
                            id
                        };
                        let ev = Bytes::from(sse::encode(Some(&format!("g{id}")), b.bytes()));
                        Some((Ok(ev), (lease, replay, stopping)))
                    }
                    None => Some((
                        Ok(Bytes::from_static(b": keep-alive\n\n")),
                        (lease, replay, stopping),
                    )),
                }
            }
        },
    );
    sse_response(Body::from_stream(stream))
}

pub(super) async fn delete(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<crate::tls::Peer>,
    headers: HeaderMap,
) -> Response {
    let (caller, _) = match front.caller(&headers, peer).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(r) = super::modern::method_not_allowed(&headers) {
        return r;
    }
    let hs = match front.session_for(&headers, caller) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sid = hs.session.id.clone();
    lock(&front.inner.sessions).remove(&sid);
    hs.session.close();
    tracing::info!(session = %sid, "session deleted by client");
    StatusCode::OK.into_response()
}

/// Puts the GET stream's receiver back into the outbox when the stream ends.
pub(super) struct Lease {
    pub(super) outbox: Arc<Mutex<Outbox>>,
    pub(super) rx: Option<mpsc::Receiver<Message>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            lock(&self.outbox).rx = Some(rx);
        }
    }
}
