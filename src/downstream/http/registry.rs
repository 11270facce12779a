//! The front's sessions by `Mcp-Session-Id`: lookup (a session belongs to its caller only),
//! counts, the idle reaper, and closing them all at shutdown.

use super::*;

// The `Err` of these lookups is the finished HTTP response itself, built once per refusal.
#[allow(clippy::result_large_err)]
impl Front {
    /// Open sessions (ended ones waiting for the reaper do not count, as in the per-agent
    /// counts).
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions)
            .values()
            .filter(|s| !s.session.is_closed())
            .count()
    }

    /// The caller's session named by the request. Another caller's session is "not found": a
    /// session id alone grants nothing.
    pub(super) fn session_for(
        &self,
        headers: &HeaderMap,
        caller: Caller,
    ) -> Result<Arc<HttpSession>, Response> {
        let hs = self.session(headers)?;
        if hs.caller != caller {
            tracing::warn!("request refused: session used with another caller's credential");
            return Err(jsonrpc_error(
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                "Session not found",
            ));
        }
        Ok(hs)
    }

    pub(super) fn session(&self, headers: &HeaderMap) -> Result<Arc<HttpSession>, Response> {
        let Some(sid) = headers.get(HEADER_SESSION_ID).and_then(|v| v.to_str().ok()) else {
            return Err(jsonrpc_error(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required",
            ));
        };
        match lock(&self.inner.sessions).get(sid) {
            Some(s) if !s.session.is_closed() => Ok(s.clone()),
            _ => Err(jsonrpc_error(
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                "Session not found",
            )),
        }
    }

    /// Closes sessions idle for longer than the configured TTL.
    pub(super) fn reap(&self) {
        let ttl = self.cfg().proxy.session_idle_timeout;
        let expired: Vec<(String, Arc<HttpSession>)> = {
            let mut map = lock(&self.inner.sessions);
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, s)| {
                    s.session.is_closed()
                        || (s.session.idle_for() > ttl && lock(&s.outbox).rx.is_some())
                })
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter()
                .filter_map(|k| map.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (id, s) in expired {
            tracing::info!(session = %id, "idle session reaped");
            s.session.close();
        }
    }

    pub(super) fn close_all(&self) {
        let all: Vec<_> = lock(&self.inner.sessions).drain().collect();
        for (_, s) in all {
            s.session.close();
        }
        self.inner.stateless.close();
        self.inner.shared.close();
    }
}
