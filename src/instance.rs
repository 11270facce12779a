//! One proxy instance's wiring: what its sessions share, opened once per process.
//!
//! A serving instance (either front) has the state directory, the tool pins, the approval broker
//! with its store, the control socket and the shared upstream connections, and applies every
//! reloaded config to them in one place ([`Instance::apply`]). An operator command (`tools`,
//! `check --probe`, `tools accept`) gets an [`Instance::operator`]: pins and shared upstreams
//! only — no broker and no control socket, so it neither listens where a running instance does
//! nor touches approvals.
//!
//! Must not: know a front's transport or a session's internals; sessions receive an
//! `&Instance` and take what they need from it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;

/// What the sessions of one proxy instance share.
pub struct Instance {
    pub upstreams: crate::session::shared::Registry,
    pub pins: Option<Arc<crate::pins::PinStore>>,
    /// Held calls and the humans who decide them; `None` (no state directory, or an operator
    /// command): every consent envelope is refused (fail closed).
    pub broker: Option<Arc<crate::approval::Broker>>,
    /// Remote operators' credentials (shared with the control endpoints; swapped on reload).
    pub operators: crate::approval::control::Operators,
    _control: Option<crate::task::Owned>,
    /// A fleet's pin reloads, on its database's notifications.
    _pin_sync: Option<crate::task::Owned>,
}

impl Instance {
    /// The instance behind a front: everything, with the control API served on the state
    /// directory's socket (when a runtime is running; unit tests build one without).
    pub fn serve(cfg: &Arc<Config>) -> Instance {
        Instance::open(cfg, true)
    }

    /// The instance of an operator command: tool pins and upstreams, nothing that listens or
    /// decides approvals.
    pub fn operator(cfg: &Arc<Config>) -> Instance {
        Instance::open(cfg, false)
    }

    fn open(cfg: &Arc<Config>, serving: bool) -> Instance {
        let dir = cfg.state_dir();
        let usable = match crate::state::ensure_dir(&dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "no usable state directory: tool definitions are not pinned and consent envelopes are refused");
                false
            }
        };
        // A fleet's pins are its database's, for operator commands too (`tools accept`).
        let pins = usable.then(|| {
            Arc::new(match &cfg.store {
                Some(settings) => crate::pins::PinStore::open_fleet(settings.clone()),
                None => crate::pins::PinStore::open(dir.clone()),
            })
        });
        let broker =
            (usable && serving).then(|| Arc::new(crate::approval::Broker::open(dir.clone(), cfg)));
        let pin_sync = match (&pins, broker.as_ref().and_then(|b| b.fleet())) {
            (Some(pins), Some(fleet)) => {
                let (pins, mut notices) = (pins.clone(), fleet.subscribe());
                Some(crate::task::spawn(
                    tracing::info_span!("fleet pins"),
                    async move {
                        use crate::approval::postgres::Notice;
                        loop {
                            match notices.recv().await {
                                Ok(Notice::Pins(from)) => pins.reload(Some(&from)),
                                // Notifications may have been missed.
                                Ok(Notice::Connected)
                                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    pins.reload(None)
                                }
                                Ok(_) => {}
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    },
                ))
            }
            _ => None,
        };
        let operators: crate::approval::control::Operators = Arc::default();
        let control = match (&broker, tokio::runtime::Handle::try_current()) {
            (Some(b), Ok(_)) => {
                match crate::approval::control::serve(&dir, b.clone(), operators.clone()) {
                    Ok(task) => Some(task),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serve the control API: approvals can only expire");
                        None
                    }
                }
            }
            _ => None,
        };
        let instance = Instance {
            upstreams: crate::session::shared::Registry::new(cfg),
            pins,
            broker,
            operators,
            _control: control,
            _pin_sync: pin_sync,
        };
        instance.apply_settings(cfg);
        instance
    }

    pub fn close(&self) {
        self.upstreams.close();
    }

    /// Applies a reloaded config to what the instance shares (both fronts call it; each then
    /// reconfigures its own sessions): shared upstreams, remote operators, webhooks and the
    /// grant policy.
    pub fn apply(&self, cfg: &Arc<Config>) {
        self.upstreams.sync(cfg);
        self.apply_settings(cfg);
        // The store is opened once: a changed `[store]` waits for the next start.
        if let Some(b) = &self.broker {
            let same = match (b.fleet(), &cfg.store) {
                (None, None) => true,
                (Some(f), Some(s)) => f.settings().same_as(s),
                _ => false,
            };
            if !same {
                tracing::warn!("the [store] section changed: approvals, grants, the audit log and tool pins stay where they are until a restart");
            }
        }
    }

    fn apply_settings(&self, cfg: &Arc<Config>) {
        *self.operators.write().unwrap_or_else(|p| p.into_inner()) =
            crate::approval::control::operators_of(cfg);
        if let Some(b) = &self.broker {
            b.set_webhooks(cfg.approvals.webhooks.clone());
            b.set_openclaw(cfg.approvals.openclaw.clone());
            b.set_grant_policy(cfg.approvals.grant_ttl, cfg.approvals.grant_per_arguments);
        }
    }

    /// Waits (up to 5 s each) until what was queued for the pin file and the approval store
    /// is written: new pins and the audit entries of the last calls must not be lost at
    /// shutdown.
    pub async fn flush(&self) {
        if let Some(p) = self.pins.clone() {
            let _ = tokio::task::spawn_blocking(move || p.flush()).await;
        }
        if let Some(b) = &self.broker {
            if tokio::time::timeout(Duration::from_secs(5), b.flush())
                .await
                .is_err()
            {
                tracing::error!("the approval store did not finish writing within 5 s of shutdown");
            }
        }
    }
}
