//! `/healthz`, `/readyz` (with the probes of `required` upstreams) and `/metrics`.

use super::*;

/// Readiness for orchestrators: 503 until every `required` upstream has completed a handshake
/// (and whenever its last probe failed), and while a fleet's database does not answer (then
/// calls that need approvals or grants are refused, plain calls still flow: a load balancer
/// should check `/healthz`, see the README); warnings name unsafe settings in force.
pub(super) async fn readyz(State(front): State<Front>) -> Response {
    let cfg = front.cfg();
    let mut warnings = vec![];
    if cfg.proxy.insecure_remote {
        warnings
            .push("listening beyond loopback without TLS (--dangerously-allow-insecure-remote)");
    }
    let probed = lock(&front.inner.required).clone();
    let mut upstreams = serde_json::Map::new();
    let mut ready = true;
    for u in cfg.upstreams.iter().filter(|u| u.required && u.enabled) {
        let state = match probed.get(&u.name) {
            Some(Ok(())) => serde_json::json!({"up": true}),
            Some(Err(e)) => serde_json::json!({"up": false, "error": e}),
            None => serde_json::json!({"up": false, "error": "not probed yet"}),
        };
        ready &= state.get("up") == Some(&serde_json::Value::Bool(true));
        upstreams.insert(u.name.clone(), state);
    }
    let store = match front.inner.shared.broker.as_ref().and_then(|b| b.fleet()) {
        None => None,
        Some(fleet) => Some(match fleet.ping().await {
            Ok(()) => serde_json::json!({"up": true, "replica": fleet.replica()}),
            Err(e) => {
                ready = false;
                serde_json::json!({"up": false, "error": e})
            }
        }),
    };
    let mut body = serde_json::json!({
        "ready": ready,
        "sessions": front.session_count(),
        "required": upstreams,
        "warnings": warnings,
    });
    if let (Some(store), Some(obj)) = (store, body.as_object_mut()) {
        obj.insert("store".into(), store);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Prometheus metrics (OpenMetrics text). Unauthenticated like the health endpoints; it names
/// upstreams and agents but carries no arguments, tokens or results.
pub(super) async fn metrics(State(front): State<Front>) -> Response {
    let pending = front
        .inner
        .shared
        .broker
        .as_ref()
        .map_or(0, |b| b.held() as u64);
    let text = crate::metrics::METRICS.render(front.session_count() as u64, pending);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

impl Front {
    /// Probes every enabled `required` upstream with a full handshake (then closes it): at
    /// start, every 2 s while one is not up, every 30 s once all are. Follows reloads.
    pub(super) async fn probe_required(&self) {
        loop {
            let cfg = self.cfg();
            let wanted: Vec<_> = cfg
                .upstreams
                .iter()
                .filter(|u| u.required && u.enabled)
                .cloned()
                .collect();
            // All at once: readiness waits for the slowest upstream, not for their sum.
            let probes = wanted.iter().map(|u| async {
                let hs = crate::upstream::Handshake::own("mcp-warden-probe");
                let events: crate::upstream::EventHandler = Arc::new(|_| {});
                let r =
                    crate::upstream::Connection::connect(u, &hs, cfg.proxy.max_line_bytes, events)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::warn!(upstream = %u.name, error = %e, "required upstream is not up");
                }
                (u.name.clone(), r)
            });
            let results: std::collections::BTreeMap<_, _> = futures_util::future::join_all(probes)
                .await
                .into_iter()
                .collect();
            let all_up = results.values().all(|r| r.is_ok());
            *lock(&self.inner.required) = results;
            let wait = if all_up { 30 } else { 2 };
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }
}
