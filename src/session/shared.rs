//! Upstreams marked `shared = true`: one connection (one child, for stdio) serving every
//! session, for stateless servers that are slow to start.
//!
//! The connection is initialised with mcp-warden's own client info and no client capabilities,
//! so the upstream never sends server→client requests (which could not be attributed to one
//! agent); a request it sends anyway is refused. Upstream request ids are unique per connection
//! already (`Connection` assigns them); progress tokens are rewritten to tokens of our own on the
//! way up and restored on the way back, so each notification reaches only the session it belongs
//! to. List changes and the connection's end reach every session using it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{backoff, Session};
use crate::config::{Config, Upstream as UpstreamConfig};
use crate::jsonrpc::{self, code, Edit, Kind};
use crate::mcp;
use crate::mcp::params::Params;
use crate::upstream::{Connection, Event, EventHandler, Handshake, Inbound, UpstreamError};
use crate::util::lock;

/// The shared upstreams of one proxy instance, by upstream name.
#[derive(Default)]
pub struct Registry {
    by_name: Mutex<HashMap<String, Arc<SharedUpstream>>>,
}

impl Registry {
    pub fn new(cfg: &Arc<Config>) -> Registry {
        let r = Registry::default();
        r.sync(cfg);
        r
    }

    /// Brings the registry in line with a (new) config: shared upstreams that are gone or whose
    /// connection changed are closed; new ones are created (they connect on first use).
    pub fn sync(&self, cfg: &Config) {
        let wanted: HashMap<&str, &UpstreamConfig> = cfg
            .upstreams
            .iter()
            .filter(|u| u.shared && u.enabled)
            .map(|u| (u.name.as_str(), u))
            .collect();
        let mut map = lock(&self.by_name);
        map.retain(|name, sh| {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|u| u.same_connection(&sh.cfg));
            if !keep {
                sh.shutdown();
            }
            keep
        });
        for (name, u) in wanted {
            map.entry(name.to_string())
                .or_insert_with(|| SharedUpstream::new((*u).clone(), cfg.proxy.max_line_bytes));
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<SharedUpstream>> {
        lock(&self.by_name).get(name).cloned()
    }

    /// Closes every shared connection for good (at shutdown).
    pub fn close(&self) {
        for sh in lock(&self.by_name).values() {
            sh.shutdown();
        }
    }
}

enum State {
    Up(Arc<Connection>),
    Down { retry_at: Instant },
}

/// A progress token we sent upstream in place of an agent's.
struct TokenOwner {
    session: Weak<Session>,
    original: String,
}

pub struct SharedUpstream {
    cfg: UpstreamConfig,
    max_line: usize,
    state: Mutex<State>,
    connecting: tokio::sync::Mutex<()>,
    failures: AtomicU64,
    sessions: Mutex<Vec<Weak<Session>>>,
    tokens: Mutex<HashMap<String, TokenOwner>>,
    /// Upstream request id → the session that sent it (to route related messages).
    calls: Mutex<HashMap<u64, Weak<Session>>>,
    next_token: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    /// A restart is scheduled for when the backoff ends.
    restart_pending: std::sync::atomic::AtomicBool,
    this: Weak<SharedUpstream>,
}

impl SharedUpstream {
    fn new(cfg: UpstreamConfig, max_line: usize) -> Arc<SharedUpstream> {
        Arc::new_cyclic(|this| SharedUpstream {
            cfg,
            max_line,
            state: Mutex::new(State::Down {
                retry_at: Instant::now(),
            }),
            connecting: tokio::sync::Mutex::new(()),
            failures: AtomicU64::new(0),
            sessions: Mutex::new(vec![]),
            tokens: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            closed: std::sync::atomic::AtomicBool::new(false),
            restart_pending: std::sync::atomic::AtomicBool::new(false),
            this: this.clone(),
        })
    }

    /// Closes the connection for good.
    fn shutdown(&self) {
        self.closed.store(true, Ordering::Relaxed);
        *lock(&self.state) = State::Down {
            retry_at: Instant::now(),
        };
    }

    pub fn attach(&self, s: Weak<Session>) {
        let mut v = lock(&self.sessions);
        v.retain(|w| w.strong_count() > 0);
        v.push(s);
    }

    pub fn live(&self) -> Option<Arc<Connection>> {
        match &*lock(&self.state) {
            State::Up(c) if c.is_alive() => Some(c.clone()),
            _ => None,
        }
    }

    pub async fn connection(&self) -> Result<Arc<Connection>, UpstreamError> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if self.closed.load(Ordering::Relaxed) {
            return Err(UpstreamError::Unavailable(self.cfg.name.clone()));
        }
        match &*lock(&self.state) {
            State::Up(c) if c.is_alive() => return Ok(c.clone()),
            State::Down { retry_at } if *retry_at > Instant::now() => {
                self.schedule_restart(*retry_at);
                return Err(UpstreamError::Unavailable(self.cfg.name.clone()));
            }
            _ => {}
        }
        let hs = Handshake::own("mcp-warden");
        let this = self.this.clone();
        let handler: EventHandler = Arc::new(move |ev| {
            if let Some(s) = this.upgrade() {
                s.on_event(ev);
            }
        });
        match Connection::connect(&self.cfg, &hs, self.max_line, handler).await {
            Ok(c) => {
                let c = Arc::new(c);
                *lock(&self.state) = State::Up(c.clone());
                tracing::info!(upstream = %self.cfg.name, "shared upstream connected");
                for s in self.sessions() {
                    s.upstream_arrived();
                }
                Ok(c)
            }
            Err(e) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed);
                let retry_at = Instant::now() + backoff(n);
                *lock(&self.state) = State::Down { retry_at };
                self.schedule_restart(retry_at);
                Err(e)
            }
        }
    }

    /// Reconnects when the backoff ends, whether or not a session asks meanwhile (see
    /// `Session::schedule_restart`): one timer at a time, until the registry closes it.
    fn schedule_restart(&self, at: Instant) {
        if self.closed.load(Ordering::Relaxed) || self.restart_pending.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.this.clone();
        crate::task::detach(
            tracing::info_span!("restart", upstream = %self.cfg.name),
            async move {
                tokio::time::sleep_until(at).await;
                let Some(s) = this.upgrade() else { return };
                s.restart_pending.store(false, Ordering::Release);
                if !s.closed.load(Ordering::Relaxed) {
                    let _ = s.connection().await;
                }
            },
        );
    }

    /// Replaces the agent's progress token in `msg` by one of ours, remembering whose it is.
    /// Returns the edited message and the token to forget when the call ends.
    pub fn rewrite_progress_token(
        &self,
        session: &Weak<Session>,
        msg: &jsonrpc::Message,
    ) -> (jsonrpc::Message, Option<String>) {
        let params = Params::of(msg);
        let Some(tok) = Params::text(msg, params.progress_token) else {
            return (msg.clone(), None);
        };
        // Unique per shared connection; the upstream only ever sees tokens of this shape.
        let ours = format!("\"mw-{}\"", self.next_token.fetch_add(1, Ordering::Relaxed));
        let Ok(edited) = msg.edited(vec![Edit::new(msg.span_of(tok), ours.as_bytes())]) else {
            return (msg.clone(), None);
        };
        lock(&self.tokens).insert(
            ours.clone(),
            TokenOwner {
                session: session.clone(),
                original: tok.to_string(),
            },
        );
        (edited, Some(ours))
    }

    pub fn call_started(&self, up_id: u64, session: &Weak<Session>) {
        lock(&self.calls).insert(up_id, session.clone());
    }

    pub fn call_ended(&self, up_id: u64, token: Option<&str>) {
        lock(&self.calls).remove(&up_id);
        if let Some(t) = token {
            lock(&self.tokens).remove(t);
        }
    }

    fn sessions(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn on_event(&self, ev: Event) {
        match ev {
            Event::Closed { reason } => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed);
                let retry_at = Instant::now() + backoff(n).min(Duration::from_secs(5));
                *lock(&self.state) = State::Down { retry_at };
                self.schedule_restart(retry_at);
                tracing::warn!(upstream = %self.cfg.name, %reason, "shared upstream went down");
                for s in self.sessions() {
                    s.shared_upstream_closed(&self.cfg.name);
                }
            }
            Event::Message(inbound) => self.on_message(inbound),
        }
    }

    fn on_message(&self, inbound: Inbound) {
        let msg = &inbound.msg;
        match msg.kind() {
            Kind::Request => {
                // We declared no client capabilities: nothing may be asked of "the" client.
                if let Some(c) = self.live() {
                    c.send_later(jsonrpc::error_response(
                        msg.id_str(),
                        code::METHOD_NOT_FOUND,
                        "Not supported by a shared upstream connection",
                    ));
                }
            }
            Kind::Response => {}
            Kind::Notification => {
                let method = msg.method().unwrap_or_default();
                if super::catalog::ListKind::from_list_changed(method).is_some() {
                    for s in self.sessions() {
                        s.on_shared_event(
                            &self.cfg.name,
                            Event::Message(Inbound {
                                msg: msg.clone(),
                                related: None,
                            }),
                        );
                    }
                    return;
                }
                if method == "notifications/progress" {
                    let Some(p) = msg
                        .params()
                        .and_then(|p| serde_json::from_str::<mcp::ProgressParams<'_>>(p).ok())
                    else {
                        return;
                    };
                    let owner = lock(&self.tokens)
                        .get(p.progress_token.get())
                        .map(|o| (o.session.clone(), o.original.clone()));
                    let Some((session, original)) = owner else {
                        return;
                    };
                    let Ok(restored) = msg.edited(vec![Edit::new(
                        msg.span_of(p.progress_token.get()),
                        original.as_bytes(),
                    )]) else {
                        return;
                    };
                    if let Some(s) = session.upgrade() {
                        s.on_shared_event(
                            &self.cfg.name,
                            Event::Message(Inbound {
                                msg: restored,
                                related: inbound.related,
                            }),
                        );
                    }
                    return;
                }
                // Anything else (logging, resource updates) goes to the one session it can be
                // attributed to: the caller of the related request, or the only session with a
                // call in flight. Otherwise it is dropped rather than shown to the wrong agent.
                let target = {
                    let calls = lock(&self.calls);
                    match inbound.related.and_then(|r| calls.get(&r).cloned()) {
                        Some(s) => Some(s),
                        None => {
                            let mut owners: Vec<&Weak<Session>> = calls.values().collect();
                            owners.dedup_by(|a, b| a.ptr_eq(b));
                            (owners.len() == 1).then(|| owners[0].clone())
                        }
                    }
                };
                match target.and_then(|w| w.upgrade()) {
                    Some(s) => s.on_shared_event(&self.cfg.name, Event::Message(inbound)),
                    None => {
                        tracing::debug!(upstream = %self.cfg.name, method, "notification from a shared upstream not attributable to one session; dropped")
                    }
                }
            }
        }
    }
}
