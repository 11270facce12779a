//! The audit log's hash chain: each entry carries the hash of the previous entry and its own
//! content (sequence number, time, event), so a removed, reordered or edited entry breaks the
//! chain. `mcp-warden audit verify` names the first broken link. The entries are stored by the
//! approval store (`store.rs`).

use serde_json::Value;
use sha2::Digest;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn hash(prev: &str, seq: u64, time: &str, event: &Value) -> String {
    hash_text(prev, seq, time, &event.to_string())
}

fn hash_text(prev: &str, seq: u64, time: &str, event: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(prev.as_bytes());
    h.update(seq.to_string().as_bytes());
    h.update(time.as_bytes());
    h.update(event.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: u64,
    pub time: String,
    /// The event as stored (JSON text).
    pub event: String,
    pub prev: String,
    pub hash: String,
}

/// Checks the chain; `Err` names the first broken entry and why.
pub fn verify(rows: &[Row]) -> Result<u64, String> {
    let mut prev = GENESIS.to_string();
    for (n, r) in rows.iter().enumerate() {
        let n = n as u64;
        if r.seq != n {
            return Err(format!(
                "entry {n}: sequence {}, expected {n} (an entry was removed or reordered)",
                r.seq
            ));
        }
        if r.prev != prev {
            return Err(format!(
                "entry {n}: does not continue the chain (previous hash differs)"
            ));
        }
        let want = hash_text(&prev, r.seq, &r.time, &r.event);
        if r.hash != want {
            return Err(format!(
                "entry {n}: content does not match its hash (edited)"
            ));
        }
        prev = want;
    }
    Ok(rows.len() as u64)
}

/// RFC 3339 UTC time from the system clock, without a date crate.
pub fn now_rfc3339() -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::store::{audit_rows, SqliteStore, Store};
    use super::*;

    #[test]
    fn chain_verifies_and_tampering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            for i in 0..3 {
                s.audit(&serde_json::json!({"kind": "test", "i": i}))
                    .unwrap();
            }
        }
        // Reopening continues the chain.
        SqliteStore::open(dir.path())
            .unwrap()
            .audit(&serde_json::json!({"kind": "after-restart"}))
            .unwrap();
        assert_eq!(verify(&audit_rows(dir.path()).unwrap()), Ok(4));
        let db = rusqlite::Connection::open(dir.path().join(super::super::store::FILE)).unwrap();
        db.execute(
            "UPDATE audit SET event = replace(event, '\"i\":1', '\"i\":7') WHERE seq = 1",
            [],
        )
        .unwrap();
        let e = verify(&audit_rows(dir.path()).unwrap()).unwrap_err();
        assert!(e.starts_with("entry 1: content"), "{e}");
        db.execute(
            "UPDATE audit SET event = replace(event, '\"i\":7', '\"i\":1') WHERE seq = 1",
            [],
        )
        .unwrap();
        db.execute("DELETE FROM audit WHERE seq = 1", []).unwrap();
        assert!(verify(&audit_rows(dir.path()).unwrap())
            .unwrap_err()
            .starts_with("entry 1: sequence"));
    }

    #[test]
    fn time_format() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
