//! A session's upstreams as it uses them: one slot per configured upstream, its connection
//! (or why it is down), (re)connection with backoff and restarts when the backoff ends, and
//! how a config reload adds, replaces and removes slots.
//!
//! Owns: slot state and the connection lifecycle. Must not: route messages (`route`, `relay`)
//! or decide what an agent sees (`lists`, `catalog`).

use super::*;

/// How long an upstream that keeps failing is left alone before the next attempt, at most.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How often an upstream without a sign-in looks for one made meanwhile (a file that is not
/// there: nothing is sent anywhere). Its use looks at once; this brings back an upstream none
/// of whose tools is listed (never signed in here, so nothing pinned).
pub(super) const SIGNED_OUT_RECHECK: Duration = Duration::from_secs(5);

pub(super) enum SlotState {
    Up {
        conn: Arc<Connection>,
        since: Instant,
    },
    Down {
        retry_at: Instant,
        reason: String,
    },
    /// An OAuth upstream nobody has signed mcp-warden in to (for this agent or person):
    /// nothing is sent to it; a sign-in made meanwhile is looked for at each use and every
    /// [`SIGNED_OUT_RECHECK`]. `by`: who makes it.
    SignedOut {
        by: crate::upstream::SignInBy,
    },
    Disabled,
}

/// One upstream as this session uses it. Identified by `id`, stable for the session's life
/// (config reloads add, replace and remove slots, never renumber them): ids are what in-flight
/// bookkeeping and list entries refer to.
pub(super) struct Slot {
    pub(super) id: usize,
    /// Swapped on reload when the running connection can keep serving (same transport).
    pub(super) cfg: RwLock<Arc<UpstreamConfig>>,
    /// Enabled, and the session's agent may use it. An unusable upstream is never started for
    /// this session and nothing of it is reachable.
    pub(super) usable: AtomicBool,
    /// Set for `shared = true` upstreams: the connection is the registry's, not the session's.
    pub(super) shared: Option<Arc<shared::SharedUpstream>>,
    pub(super) state: Mutex<SlotState>,
    /// Serialises (re)connection attempts.
    pub(super) connecting: tokio::sync::Mutex<()>,
    pub(super) failures: AtomicU64,
    /// A restart is scheduled for when the backoff ends (see [`Session::schedule_restart`]).
    pub(super) restart_pending: AtomicBool,
}

impl Slot {
    pub(super) fn new(
        id: usize,
        cfg: Arc<UpstreamConfig>,
        usable: bool,
        shared: Option<Arc<shared::SharedUpstream>>,
    ) -> Slot {
        Slot {
            id,
            cfg: RwLock::new(cfg),
            usable: AtomicBool::new(usable),
            shared: shared.filter(|_| usable),
            state: Mutex::new(if usable {
                SlotState::Down {
                    retry_at: Instant::now(),
                    reason: "not started".into(),
                }
            } else {
                SlotState::Disabled
            }),
            connecting: tokio::sync::Mutex::new(()),
            failures: AtomicU64::new(0),
            restart_pending: AtomicBool::new(false),
        }
    }

    pub(super) fn cfg(&self) -> Arc<UpstreamConfig> {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn name(&self) -> String {
        self.cfg().name.clone()
    }

    pub(super) fn usable(&self) -> bool {
        self.usable.load(Ordering::Relaxed)
    }
}

pub(crate) fn backoff(failures: u64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let ms = 250u64.saturating_mul(1 << failures.min(8));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

impl Session {
    /// The live connection of upstream `idx`, (re)connecting if it is down and its backoff has
    /// passed.
    pub(super) async fn connection(&self, idx: usize) -> Result<Arc<Connection>, UpstreamError> {
        if let Some(c) = self.live(idx) {
            return Ok(c);
        }
        // Starting an upstream is a large future; boxed, it does not weigh on every call's
        // task (see `start_request`).
        Box::pin(self.connect_slot(idx)).await
    }

    pub(super) async fn connect_slot(&self, idx: usize) -> Result<Arc<Connection>, UpstreamError> {
        let Some(slot) = self.slot(idx) else {
            return Err(UpstreamError::Unavailable(format!("#{idx}")));
        };
        if let Some(c) = self.live(idx) {
            return Ok(c);
        }
        if !slot.usable() {
            return Err(UpstreamError::Unavailable(slot.name()));
        }
        if let Some(sh) = &slot.shared {
            if self.is_closed() {
                return Err(UpstreamError::Unavailable(slot.name()));
            }
            return sh.connection().await;
        }
        let _one = slot.connecting.lock().await;
        match &*lock(&slot.state) {
            SlotState::Up { conn, .. } if conn.is_alive() => return Ok(conn.clone()),
            SlotState::Disabled => return Err(UpstreamError::Unavailable(slot.name())),
            SlotState::Down { retry_at, reason } if *retry_at > Instant::now() => {
                tracing::debug!(upstream = %slot.name(), %reason, "upstream still in backoff");
                self.schedule_restart(idx, *retry_at);
                return Err(UpstreamError::Unavailable(slot.name()));
            }
            _ => {}
        }
        if self.is_closed() {
            return Err(UpstreamError::Unavailable(slot.name()));
        }
        let this = self.this.clone();
        let handler: EventHandler = Arc::new(move |ev| {
            if let Some(s) = this.upgrade() {
                s.on_upstream_event(idx, ev);
            }
        });
        match Connection::connect(
            &slot.cfg(),
            &self.handshake,
            self.cfg().proxy.max_line_bytes,
            handler,
        )
        .await
        {
            Ok(conn) => {
                let conn = Arc::new(conn);
                let was_down_after_start = slot.failures.load(Ordering::Relaxed) > 0
                    || self.answered.load(Ordering::Relaxed);
                {
                    let mut st = lock(&slot.state);
                    if matches!(*st, SlotState::Disabled) || self.is_closed() {
                        return Err(UpstreamError::Unavailable(slot.name()));
                    }
                    *st = SlotState::Up {
                        conn: conn.clone(),
                        since: Instant::now(),
                    };
                }
                self.sign_in_done(&slot.name());
                // Lists built while it was down lack its items (even before `initialize` was
                // answered: an upstream's list_changed can trigger a build that early).
                self.invalidate(&ListKind::ALL);
                if was_down_after_start {
                    self.notify_changed(&ListKind::ALL);
                }
                Ok(conn)
            }
            Err(UpstreamError::SignIn { name, by }) => {
                let mut st = lock(&slot.state);
                if matches!(*st, SlotState::Disabled) {
                    return Err(UpstreamError::SignIn { name, by });
                }
                let new = !matches!(*st, SlotState::SignedOut { .. });
                *st = SlotState::SignedOut { by: by.clone() };
                drop(st);
                if new {
                    tracing::info!(upstream = %slot.name(), "upstream not signed in: its pinned tools are listed, and a call to one says so ({by})");
                    self.lists_changed(&[ListKind::Tools]);
                }
                self.schedule_restart_or(
                    idx,
                    Instant::now() + SIGNED_OUT_RECHECK,
                    Some(crate::upstream::oauth_store::saved()),
                );
                Err(UpstreamError::SignIn { name, by })
            }
            Err(e) => {
                let n = slot.failures.fetch_add(1, Ordering::Relaxed);
                let backoff = backoff(n);
                tracing::warn!(upstream = %slot.name(), error = %e, retry_in = ?backoff, "upstream unavailable");
                let retry_at = Instant::now() + backoff;
                {
                    let mut st = lock(&slot.state);
                    if matches!(*st, SlotState::Disabled) {
                        return Err(e);
                    }
                    *st = SlotState::Down {
                        retry_at,
                        reason: e.to_string(),
                    };
                }
                self.schedule_restart(idx, retry_at);
                Err(e)
            }
        }
    }

    /// Restarts a down upstream when its backoff ends, whether or not the agent uses it
    /// meanwhile: its tools are withdrawn while it is down, so nothing else would ask for it.
    /// One timer per slot; a failed attempt schedules the next (with a longer backoff), for any
    /// number of crashes, until the session closes.
    pub(super) fn schedule_restart(&self, idx: usize, at: Instant) {
        self.schedule_restart_or(idx, at, None)
    }

    /// [`Session::schedule_restart`], or sooner when `early` is notified (a sign-in saved).
    fn schedule_restart_or(
        &self,
        idx: usize,
        at: Instant,
        early: Option<&'static tokio::sync::Notify>,
    ) {
        let Some(slot) = self.slot(idx) else { return };
        if slot.shared.is_some()
            || self.is_closed()
            || slot.restart_pending.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.this.clone();
        crate::task::detach(
            tracing::info_span!("restart", session = %self.id, upstream = %slot.name()),
            async move {
                let early = async {
                    match early {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = early => {}
                }
                let Some(s) = this.upgrade() else { return };
                if let Some(slot) = s.slot(idx) {
                    slot.restart_pending.store(false, Ordering::Release);
                }
                if !s.is_closed() {
                    let _ = s.connection(idx).await;
                }
            },
        );
    }

    /// Whether upstream `idx` waits for a sign-in (as last seen: a call looks again).
    pub(super) fn signed_out(&self, idx: usize) -> bool {
        self.slot(idx)
            .is_some_and(|s| matches!(*lock(&s.state), SlotState::SignedOut { .. }))
    }

    /// The tools upstream `idx` offered when last listed (its pins), while it has no
    /// sign-in: the agent sees what it could call, and a call says what to do. With none
    /// pinned, mcp-warden's own sign-in tool stands in (see [`Fetched::signed_out`]).
    pub(super) fn pinned_while_signed_out(&self, idx: usize) -> Option<Fetched> {
        let slot = self.slot(idx)?;
        if !matches!(*lock(&slot.state), SlotState::SignedOut { .. }) {
            return None;
        }
        let cfg = slot.cfg();
        let items: Vec<Bytes> = match &self.pins {
            Some(pins) => pins
                .tools_of(&cfg.pin_key())
                .iter()
                .map(|t| Bytes::from(t.to_string()))
                .collect(),
            None => vec![],
        };
        Some(Fetched {
            upstream: idx,
            namespace: cfg.namespace.clone(),
            cfg,
            items,
            signed_out: true,
        })
    }

    /// Starts a (re)connection of a down upstream whose backoff has passed, without waiting.
    pub(super) fn reconnect_in_background(&self, idx: usize) {
        let Some(slot) = self.slot(idx) else { return };
        if self.is_closed() || !slot.usable() {
            return;
        }
        let due = match &*lock(&slot.state) {
            SlotState::Down { retry_at, .. } => *retry_at <= Instant::now(),
            SlotState::SignedOut { .. } => true,
            _ => slot.shared.is_some(),
        };
        let idle = slot.connecting.try_lock().is_ok();
        if !(due && idle) {
            return;
        }
        if let Some(this) = self.this.upgrade() {
            // Bounded by the upstream's startup timeout.
            let span = tracing::debug_span!("reconnect", session = %self.id, upstream = idx);
            crate::task::detach(span, async move {
                let _ = this.connection(idx).await;
            });
        }
    }

    pub(super) fn live(&self, idx: usize) -> Option<Arc<Connection>> {
        let slot = self.slot(idx)?;
        if let Some(sh) = &slot.shared {
            return if self.is_closed() || !slot.usable() {
                None
            } else {
                sh.live()
            };
        }
        let st = lock(&slot.state);
        match &*st {
            SlotState::Up { conn, .. } if conn.is_alive() => Some(conn.clone()),
            _ => None,
        }
    }

    /// The slot with this id (`None`: removed by a reload).
    pub(super) fn slot(&self, id: usize) -> Option<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    pub(super) fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn slot_ids(&self) -> Vec<usize> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.id)
            .collect()
    }

    pub(super) fn upstream_closed(&self, idx: usize, reason: String) {
        let Some(slot) = self.slot(idx) else { return };
        {
            let mut st = lock(&slot.state);
            let lived = match &*st {
                SlotState::Up { since, .. } => since.elapsed(),
                _ => return,
            };
            // A connection that stayed up a while resets the backoff; a crash loop grows it.
            let n = if lived > Duration::from_secs(30) {
                slot.failures.store(1, Ordering::Relaxed);
                0
            } else {
                slot.failures.fetch_add(1, Ordering::Relaxed)
            };
            let retry_at = Instant::now() + backoff(n);
            *st = SlotState::Down { retry_at, reason };
            drop(st);
            self.schedule_restart(idx, retry_at);
        }
        tracing::warn!(session = %self.id, upstream = %slot.name(), "upstream went down; its tools are withdrawn until it is back");
        self.lists_changed(&ListKind::ALL);
    }

    /// Applies a new, already validated config to this live session: the agent's policy is
    /// swapped; upstreams that were removed, became unusable or changed their connection are
    /// stopped; new ones start; the agent hears `list_changed` for each list whose view changed.
    /// Returns false (and closes the session) when its agent no longer exists.
    pub fn reconfigure(&self, cfg: Arc<Config>, services: &crate::instance::Instance) -> bool {
        let agent = match &self.caller {
            Caller::Agent(name) | Caller::Signed { agent: name, .. } => match cfg.agent(name) {
                Some(a) => Some(a.clone()),
                None => {
                    tracing::warn!(session = %self.id, agent = %name, "agent removed from the config; session closed");
                    self.close();
                    return false;
                }
            },
            Caller::User if !cfg.agents.is_empty() => {
                tracing::warn!(session = %self.id, "agents are now named: the single-user session is closed");
                self.close();
                return false;
            }
            Caller::User => None,
        };
        let old = self.all_slots();
        let mut kept: Vec<Arc<Slot>> = Vec::with_capacity(cfg.upstreams.len());
        let mut started = vec![];
        for u in &cfg.upstreams {
            let usable = u.enabled && policy::agent::server_allowed(agent.as_deref(), &u.name);
            let reuse = old
                .iter()
                .find(|s| s.name() == u.name && s.usable() == usable && s.cfg().same_connection(u));
            match reuse {
                Some(s) => {
                    *s.cfg.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(u.clone());
                    kept.push(s.clone());
                }
                None => {
                    let id = self.next_slot.fetch_add(1, Ordering::Relaxed) as usize;
                    let slot = Arc::new(Slot::new(
                        id,
                        Arc::new(u.clone()),
                        usable,
                        services.upstreams.get(&u.name),
                    ));
                    if let Some(sh) = &slot.shared {
                        sh.attach(self.this.clone());
                    }
                    if usable {
                        started.push(id);
                    }
                    kept.push(slot);
                }
            }
        }
        for s in &old {
            if !kept.iter().any(|k| Arc::ptr_eq(k, s)) {
                tracing::info!(session = %self.id, upstream = %s.name(), "upstream removed or changed by the new config; stopping it");
                *lock(&s.state) = SlotState::Disabled;
            }
        }
        *self.slots.write().unwrap_or_else(|p| p.into_inner()) = kept;
        *self.agent.write().unwrap_or_else(|p| p.into_inner()) = agent;
        *self.cfg.write().unwrap_or_else(|p| p.into_inner()) = cfg;
        for id in started {
            self.reconnect_in_background(id);
        }
        self.upstream_lists_changed(&ListKind::ALL);
        true
    }

    /// A message or event from the shared upstream `name`, for this session's slot using it.
    pub(crate) fn on_shared_event(&self, name: &str, ev: Event) {
        let slot = self
            .all_slots()
            .into_iter()
            .find(|s| s.shared.is_some() && s.name() == name);
        if let Some(slot) = slot {
            self.on_upstream_event(slot.id, ev);
        }
    }

    /// A shared upstream came up: sessions already answered see new tools.
    pub(super) fn upstream_arrived(&self) {
        if self.answered.load(Ordering::Relaxed) && !self.is_closed() {
            self.lists_changed(&ListKind::ALL);
        }
    }

    /// A shared upstream's connection ended: its tools are gone for now.
    pub(super) fn shared_upstream_closed(&self, name: &str) {
        tracing::warn!(session = %self.id, upstream = %name, "shared upstream went down");
        self.lists_changed(&ListKind::ALL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
