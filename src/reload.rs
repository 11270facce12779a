//! Config reload: on SIGHUP and when the config file changes on disk, the file is read and
//! validated again. A valid config is handed to the front to apply atomically; an invalid one
//! changes nothing and every error is logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;

/// How often the config file's modification time is checked.
const POLL: Duration = Duration::from_secs(1);

fn mtime(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Watches `path` until the task is dropped; calls `apply` with every new valid config.
pub async fn watch(path: PathBuf, apply: impl Fn(Arc<Config>) + Send + 'static) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut last = mtime(&path);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = mtime(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        match Config::load(&path) {
            Ok(cfg) => {
                tracing::info!(file = %path.display(), "config reloaded");
                apply(Arc::new(cfg));
            }
            Err(errs) => {
                for e in &errs.0 {
                    tracing::error!(file = %path.display(), "config reload refused, nothing changed: {e}");
                }
            }
        }
    }
}
