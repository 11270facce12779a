//! The audit log's chain: each entry carries the previous entry's hash and its own, an
//! HMAC-SHA256 of (previous hash, sequence number, time, event) under a key kept in the state
//! directory, apart from the database (derived from the approval secret). A removed, reordered or
//! edited entry breaks the chain, and without the key nobody can recompute it after an edit.
//! The head (entry count and last hash, itself MAC'd) is anchored outside the table in the
//! checkpoint file `audit.head`, rewritten atomically with every append and logged, so a
//! truncated tail — even an emptied table — is found too. An append that finds the checkpoint
//! disagreeing with the table (a tail removed while mcp-warden was stopped) first records that
//! in the chain (`audit.tampered`), so the evidence outlives the next checkpoint.
//! `mcp-warden audit verify` names the first broken link. The entries are stored by the
//! approval store (`store.rs`).
//!
//! Entries written before the chain was keyed (plain SHA-256) are verified as such, and only
//! before the first keyed entry.

use hmac::Mac;
use serde_json::Value;
use sha2::Digest;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The checkpoint file in the state directory.
pub const CHECKPOINT_FILE: &str = "audit.head";
/// What the chain's key is derived for, from the approval secret.
pub const KEY_PURPOSE: &str = "mcp-warden audit chain v1";
/// The event an append records when the checkpoint disagrees with the table.
pub const TAMPERED: &str = "audit.tampered";

/// The entry an append records first when the table does not end where its checkpoint
/// (`said`, if readable) says: what the checkpoint named and what the table holds.
pub fn tampered(said: Option<&Checkpoint>, entries: u64, head: &str) -> Value {
    serde_json::json!({
        "kind": TAMPERED,
        "checkpoint": said.map(|c| serde_json::json!({"entries": c.entries, "head": c.head})),
        "table": {"entries": entries, "head": head},
    })
}

/// The chain's key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn from_secret(secret: &[u8]) -> Key {
        Key(super::control::derive_token(secret, KEY_PURPOSE).into_bytes())
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        let mut m = match hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            // HMAC takes a key of any length; this cannot fail.
            Err(_) => return String::new(),
        };
        for p in parts {
            // Length-prefixed, so that no two different part lists MAC the same bytes.
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        hex(&m.finalize().into_bytes())
    }

    /// The hash of a keyed entry.
    pub fn link(&self, prev: &str, seq: u64, time: &str, event: &str) -> String {
        self.mac(&[
            b"entry",
            prev.as_bytes(),
            seq.to_string().as_bytes(),
            time.as_bytes(),
            event.as_bytes(),
        ])
    }

    /// A value that tells whether two parties hold the same key, and nothing about the key
    /// (a fleet's replicas compare it at start).
    pub fn fingerprint(&self) -> String {
        self.mac(&[b"mcp-warden key fingerprint"])
    }

    pub fn checkpoint(&self, entries: u64, head: &str) -> Checkpoint {
        Checkpoint {
            entries,
            head: head.to_string(),
            mac: self.checkpoint_mac(entries, head, None),
            before: None,
        }
    }

    /// The checkpoint written while an append is in flight: it names the head the append
    /// makes and the one it replaces, so that a process killed between the table's commit and
    /// the settled checkpoint leaves a log that still checks, whichever side of the commit it
    /// died on.
    pub fn intent(&self, entries: u64, head: &str, before: (u64, &str)) -> Checkpoint {
        let before = Head {
            entries: before.0,
            head: before.1.to_string(),
        };
        Checkpoint {
            entries,
            head: head.to_string(),
            mac: self.checkpoint_mac(entries, head, Some(&before)),
            before: Some(before),
        }
    }

    fn checkpoint_mac(&self, entries: u64, head: &str, before: Option<&Head>) -> String {
        let entries = entries.to_string();
        let mut parts: Vec<&[u8]> = vec![b"checkpoint", entries.as_bytes(), head.as_bytes()];
        let before_entries = before.map(|b| b.entries.to_string());
        if let (Some(b), Some(n)) = (before, &before_entries) {
            parts.extend([b"before".as_slice(), n.as_bytes(), b.head.as_bytes()]);
        }
        self.mac(&parts)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// An entry's hash before the chain was keyed.
fn legacy_link(prev: &str, seq: u64, time: &str, event: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(prev.as_bytes());
    h.update(seq.to_string().as_bytes());
    h.update(time.as_bytes());
    h.update(event.as_bytes());
    hex(&h.finalize())
}

/// The chain's head as last appended: how many entries, the last one's hash, and a MAC of both.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub entries: u64,
    pub head: String,
    pub mac: String,
    /// While an append is in flight: the head it replaces (see [`Key::intent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Head>,
}

/// A chain head: how many entries, and the last one's hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub entries: u64,
    pub head: String,
}

impl Checkpoint {
    /// Whether the table's end (`entries`, last hash `head`) is one this checkpoint names:
    /// its head, or, while an append was in flight, the head before it.
    pub fn names(&self, entries: u64, head: &str) -> bool {
        (self.entries == entries && self.head == head)
            || self
                .before
                .as_ref()
                .is_some_and(|b| b.entries == entries && b.head == head)
    }
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
    /// Written with the keyed chain (false: an entry from before it).
    pub keyed: bool,
}

/// What [`verify`] found intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// Of which written before the chain was keyed.
    pub legacy: u64,
}

/// Checks the chain and its checkpoint; `Err` names the first broken entry and why. `key`:
/// `None` when the state directory has no approval secret (then no keyed entry can be checked).
pub fn verify(
    rows: &[Row],
    key: Option<&Key>,
    checkpoint: Option<&Checkpoint>,
) -> Result<Verified, String> {
    let mut prev = GENESIS.to_string();
    let mut legacy = 0u64;
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
        let want = if r.keyed {
            let Some(key) = key else {
                return Err(format!(
                    "entry {n}: keyed, but the state directory has no approval secret to check it with"
                ));
            };
            key.link(&prev, r.seq, &r.time, &r.event)
        } else {
            if n != legacy {
                return Err(format!(
                    "entry {n}: unkeyed after keyed entries (recomputed without the key)"
                ));
            }
            legacy += 1;
            legacy_link(&prev, r.seq, &r.time, &r.event)
        };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            r.hash.as_bytes(),
            want.as_bytes(),
        )) {
            return Err(format!(
                "entry {n}: content does not match its hash (edited)"
            ));
        }
        if r.keyed && serde_json::from_str::<Value>(&r.event).is_ok_and(|e| e["kind"] == TAMPERED) {
            return Err(format!(
                "entry {n}: an append found the log tampered with before it: {}",
                r.event
            ));
        }
        prev = want;
    }
    let entries = rows.len() as u64;
    let keyed = entries - legacy;
    match (checkpoint, key) {
        (None, _) if keyed == 0 => {}
        (None, _) => {
            return Err(format!(
            "the checkpoint ({CHECKPOINT_FILE}) is missing: the end of the log cannot be checked"
        ))
        }
        (Some(_), None) => {
            return Err(
                "the state directory has no approval secret to check the checkpoint with".into(),
            )
        }
        (Some(c), Some(key)) => {
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                c.mac.as_bytes(),
                key.checkpoint_mac(c.entries, &c.head, c.before.as_ref())
                    .as_bytes(),
            )) {
                return Err(format!("the checkpoint ({CHECKPOINT_FILE}) was edited"));
            }
            if c.names(entries, &prev) {
                return Ok(Verified { entries, legacy });
            }
            if c.entries > entries {
                return Err(format!(
                    "{} entries missing at the end (the checkpoint names {}, the log has {entries})",
                    c.entries - entries,
                    c.entries
                ));
            }
            if c.entries < entries {
                return Err(format!(
                    "{} entries after the checkpoint's last ({}): not written by mcp-warden",
                    entries - c.entries,
                    c.entries
                ));
            }
            if c.head != prev {
                return Err(
                    "the last entry is not the one the checkpoint names (the tail was replaced)"
                        .to_string(),
                );
            }
        }
    }
    Ok(Verified { entries, legacy })
}

/// RFC 3339 UTC time from the system clock, without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// RFC 3339 UTC time of `secs` since the Unix epoch.
pub fn rfc3339(secs: u64) -> String {
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

    /// A log of `n` entries in a new state directory, and a connection to tamper with it.
    fn log_of(n: u64) -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            for i in 0..n {
                s.audit(&serde_json::json!({"kind": "test", "i": i}))
                    .unwrap();
            }
        }
        let db = rusqlite::Connection::open(dir.path().join(super::super::store::FILE)).unwrap();
        (dir, db)
    }

    fn check(dir: &tempfile::TempDir) -> Result<u64, String> {
        super::super::store::verify_dir(dir.path()).map(|v| v.entries)
    }

    #[test]
    fn chain_verifies_across_restarts_and_edits_are_found() {
        let (dir, db) = log_of(3);
        // Reopening continues the chain.
        SqliteStore::open(dir.path())
            .unwrap()
            .audit(&serde_json::json!({"kind": "after-restart"}))
            .unwrap();
        assert_eq!(check(&dir), Ok(4));
        db.execute(
            "UPDATE audit SET event = replace(event, '\"i\":1', '\"i\":7') WHERE seq = 1",
            [],
        )
        .unwrap();
        let e = check(&dir).unwrap_err();
        assert!(e.starts_with("entry 1: content"), "{e}");
        db.execute(
            "UPDATE audit SET event = replace(event, '\"i\":7', '\"i\":1') WHERE seq = 1",
            [],
        )
        .unwrap();
        assert_eq!(check(&dir), Ok(4));
        db.execute("DELETE FROM audit WHERE seq = 1", []).unwrap();
        assert!(check(&dir).unwrap_err().starts_with("entry 1: sequence"));
    }

    /// Found from outside: deleting the last row, the last 31 rows or all rows still verified.
    #[test]
    fn a_truncated_tail_is_found() {
        for (remove, left) in [(1u64, 39u64), (31, 9), (40, 0)] {
            let (dir, db) = log_of(40);
            db.execute("DELETE FROM audit WHERE seq >= ?1", [left as i64])
                .unwrap();
            let e = check(&dir).unwrap_err();
            assert!(
                e.starts_with(&format!("{remove} entries missing at the end")),
                "{remove}: {e}"
            );
        }
    }

    /// Found from outside: an edit followed by recomputing the rest verified. Without the key
    /// neither a keyed recomputation nor the old unkeyed algorithm gives a chain that verifies.
    #[test]
    fn an_edit_with_the_rest_recomputed_is_found() {
        let guessed = Key(b"not the key".to_vec());
        for keyed in [true, false] {
            let (dir, db) = log_of(5);
            let rows = audit_rows(dir.path()).unwrap();
            let mut prev = GENESIS.to_string();
            for r in &rows {
                let event = r.event.replace("\"i\":2", "\"i\":9");
                let h = if keyed {
                    guessed.link(&prev, r.seq, &r.time, &event)
                } else {
                    legacy_link(&prev, r.seq, &r.time, &event)
                };
                db.execute(
                    "UPDATE audit SET event = ?1, prev = ?2, hash = ?3, keyed = ?4 WHERE seq = ?5",
                    rusqlite::params![event, prev, h, keyed, r.seq as i64],
                )
                .unwrap();
                prev = h;
            }
            let e = check(&dir).unwrap_err();
            // A guessed key fails at the first entry; the old algorithm gives a chain that
            // holds together but ends where the (MAC'd) checkpoint does not.
            let want = if keyed {
                "entry 0: content"
            } else {
                "the last entry is not the one the checkpoint names"
            };
            assert!(e.starts_with(want), "keyed {keyed}: {e}");
        }
    }

    /// Killed between the intent checkpoint and the commit (found by the suite: a proxy
    /// killed with an approval pending), or between the commit and the settled checkpoint:
    /// either way the log still checks, and the next append records no tampering. A forged
    /// intent (the MAC not ours) is still an edit.
    #[test]
    fn a_process_killed_mid_append_leaves_a_log_that_checks() {
        let (dir, db) = log_of(3);
        let path = dir.path().join(CHECKPOINT_FILE);
        let key = Key::from_secret(&super::super::control::secret(dir.path()).unwrap());
        let settled: Checkpoint = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        // Before the commit: the table ends at the intent's `before`.
        let intent = key.intent(4, "not-yet-committed", (3, &settled.head));
        std::fs::write(&path, serde_json::to_vec(&intent).unwrap()).unwrap();
        assert_eq!(check(&dir), Ok(3));
        // After the commit: the table ends at the intent's head.
        let last: String = db
            .query_row(
                "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let (prev, _): (String, i64) = db
            .query_row("SELECT prev, seq FROM audit WHERE seq = 2", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let intent = key.intent(3, &last, (2, &prev));
        std::fs::write(&path, serde_json::to_vec(&intent).unwrap()).unwrap();
        assert_eq!(check(&dir), Ok(3));
        SqliteStore::open(dir.path())
            .unwrap()
            .audit(&serde_json::json!({"kind": "after-restart"}))
            .unwrap();
        assert_eq!(check(&dir), Ok(4), "no tampering recorded");
        let forged = Checkpoint {
            before: Some(Head {
                entries: 9,
                head: "x".into(),
            }),
            ..serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
        };
        std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
        assert!(check(&dir).unwrap_err().contains("was edited"));
    }

    #[test]
    fn an_edited_or_missing_checkpoint_is_found() {
        let (dir, _db) = log_of(3);
        let path = dir.path().join(CHECKPOINT_FILE);
        let c: Checkpoint = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let edited = Checkpoint {
            entries: 2,
            ..c.clone()
        };
        std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
        assert!(check(&dir).unwrap_err().contains("was edited"));
        std::fs::remove_file(&path).unwrap();
        assert!(check(&dir).unwrap_err().contains("is missing"));
    }

    /// A tail removed while mcp-warden was stopped: the next append records it in the chain,
    /// so the checkpoint it then writes does not hide it.
    #[test]
    fn an_append_after_truncation_keeps_the_evidence() {
        let (dir, db) = log_of(10);
        db.execute("DELETE FROM audit WHERE seq >= 7", []).unwrap();
        SqliteStore::open(dir.path())
            .unwrap()
            .audit(&serde_json::json!({"kind": "later"}))
            .unwrap();
        let e = check(&dir).unwrap_err();
        assert!(
            e.starts_with("entry 7: an append found the log tampered"),
            "{e}"
        );
        assert!(e.contains("\"entries\":10"), "{e}");
    }

    /// A log written before the chain was keyed (no `keyed` column, plain SHA-256) goes on
    /// with keyed entries and verifies.
    #[test]
    fn a_log_from_before_the_key_goes_on_keyed() {
        let dir = tempfile::tempdir().unwrap();
        crate::state::ensure_dir(dir.path()).unwrap();
        let db = rusqlite::Connection::open(dir.path().join(super::super::store::FILE)).unwrap();
        db.execute_batch(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, event TEXT NOT NULL,
                 prev TEXT NOT NULL, hash TEXT NOT NULL);",
        )
        .unwrap();
        let mut prev = GENESIS.to_string();
        for seq in 0..2u64 {
            let (time, event) = ("2026-01-01T00:00:00Z", format!("{{\"old\":{seq}}}"));
            let h = legacy_link(&prev, seq, time, &event);
            db.execute(
                "INSERT INTO audit VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![seq as i64, time, event, prev, h],
            )
            .unwrap();
            prev = h;
        }
        drop(db);
        assert_eq!(check(&dir), Ok(2), "the old log alone");
        SqliteStore::open(dir.path())
            .unwrap()
            .audit(&serde_json::json!({"kind": "new"}))
            .unwrap();
        assert_eq!(
            super::super::store::verify_dir(dir.path()),
            Ok(Verified {
                entries: 3,
                legacy: 2
            })
        );
    }

    #[test]
    fn known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn time_format() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
