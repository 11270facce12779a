//! The append-only audit log: one JSON object per line in `audit.jsonl` in the state directory,
//! each carrying the SHA-256 of the previous line's hash and its own content, so a removed,
//! reordered or edited line breaks the chain. `mcp-warden audit verify` names the first broken
//! link.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;
use sha2::Digest;

use crate::upstream::lock;

pub const FILE: &str = "audit.jsonl";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn hash(prev: &str, seq: u64, time: &str, event: &Value) -> String {
    let mut h = sha2::Sha256::new();
    h.update(prev.as_bytes());
    h.update(seq.to_string().as_bytes());
    h.update(time.as_bytes());
    h.update(event.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub struct AuditLog {
    path: PathBuf,
    /// (next sequence number, hash of the last line)
    tail: Mutex<(u64, String)>,
}

impl AuditLog {
    /// Opens (creating) the log in `dir`, continuing the chain where it ends.
    pub fn open(dir: &Path) -> std::io::Result<AuditLog> {
        crate::state::ensure_dir(dir)?;
        let path = dir.join(FILE);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the audit log is a symlink",
            ));
        }
        let mut tail = (0u64, GENESIS.to_string());
        if let Ok(f) = std::fs::File::open(&path) {
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let (Some(seq), Some(h)) = (v["seq"].as_u64(), v["hash"].as_str()) {
                        tail = (seq + 1, h.to_string());
                    }
                }
            }
        }
        Ok(AuditLog {
            path,
            tail: Mutex::new(tail),
        })
    }

    /// Appends one event. A failure is returned so that callers can fail closed.
    pub fn record(&self, event: Value) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut tail = lock(&self.tail);
        let time = humantime_now();
        let h = hash(&tail.1, tail.0, &time, &event);
        let line = serde_json::json!({"seq": tail.0, "time": time, "event": event, "prev": tail.1, "hash": h});
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&self.path)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        f.sync_data()?;
        *tail = (tail.0 + 1, h);
        Ok(())
    }
}

/// RFC 3339 UTC time, from the system clock, without a date crate.
fn humantime_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Checks the chain; `Err` names the first broken line (1-based) and why.
pub fn verify(path: &Path) -> Result<u64, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: unreadable: {e}", i + 1))?;
        let v: Value =
            serde_json::from_str(&line).map_err(|_| format!("line {}: not JSON", i + 1))?;
        let seq = v["seq"].as_u64().ok_or(format!("line {}: no seq", i + 1))?;
        if seq != n {
            return Err(format!(
                "line {}: sequence {seq}, expected {n} (a line was removed or reordered)",
                i + 1
            ));
        }
        if v["prev"].as_str() != Some(prev.as_str()) {
            return Err(format!(
                "line {}: does not continue the chain (prev hash differs)",
                i + 1
            ));
        }
        let time = v["time"].as_str().unwrap_or_default();
        let want = hash(&prev, seq, time, &v["event"]);
        if v["hash"].as_str() != Some(want.as_str()) {
            return Err(format!(
                "line {}: content does not match its hash (edited)",
                i + 1
            ));
        }
        prev = want;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn chain_verifies_and_tampering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..3 {
            log.record(serde_json::json!({"kind": "test", "i": i}))
                .unwrap();
        }
        // Reopening continues the chain.
        let log = AuditLog::open(dir.path()).unwrap();
        log.record(serde_json::json!({"kind": "after-restart"}))
            .unwrap();
        let path = dir.path().join(FILE);
        assert_eq!(verify(&path), Ok(4));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"i\":1", "\"i\":7", 1)).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(verify(&path).unwrap_err().starts_with("line 2: sequence"));
    }

    #[test]
    fn time_format() {
        let t = humantime_now();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
