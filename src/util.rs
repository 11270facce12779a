//! Small helpers every module may use, and nothing else: they depend on no module of the crate.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks a std mutex, recovering from poisoning: the maps guarded with it stay consistent even
/// if a holder panicked (every critical section is a single insert, remove or swap).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `s` cut to at most `max` bytes (at a character boundary), with `…` when cut: for logging
/// what a peer sent.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
