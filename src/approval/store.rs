//! Where approvals (pending and history), grants and the audit log live: behind the narrow
//! [`Store`] interface, so that a shared database server can replace the embedded default
//! without touching the broker. The default is an embedded SQLite database, `warden.db` in the
//! state directory (created 0600, never opened through a symlink; several instances sharing the
//! state directory share it safely, SQLite locks).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use super::{audit, ApprovalInfo, Decision, Ending, Grant};
use crate::util::lock;

pub const FILE: &str = "warden.db";

#[derive(Debug, thiserror::Error)]
#[error("approval store: {0}")]
pub struct StoreError(String);

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// The narrow interface the broker needs.
pub trait Store: Send + Sync {
    /// Appends one event to the hash-chained audit log.
    fn audit(&self, event: &Value) -> Result<(), StoreError>;
    /// Records an approval and its status (`pending`, `decided`, `expired`, `cancelled`,
    /// `abandoned`, `failed`). `only_if_open`: only while no decision or closing was recorded
    /// first; returns whether anything changed.
    fn approval(
        &self,
        info: &ApprovalInfo,
        status: &str,
        detail: Option<&Value>,
        only_if_open: bool,
    ) -> Result<bool, StoreError>;
    /// Records a decision on an open approval held by `instance` (the first one wins).
    fn decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        instance: &str,
    ) -> Result<Option<ApprovalInfo>, StoreError>;
    /// How an approval ended, if it has.
    fn ending(&self, id: &str) -> Result<Option<Ending>, StoreError>;
    /// Approvals still `pending` (left by a process that stopped, when called at start).
    fn pending(&self) -> Result<Vec<ApprovalInfo>, StoreError>;
    fn grants(&self) -> Result<Vec<Grant>, StoreError>;
    fn add_grant(&self, g: &Grant) -> Result<(), StoreError>;
    fn remove_grant(&self, id: &str) -> Result<bool, StoreError>;
}

/// The store on a thread of its own. SQLite (synchronous = FULL, a 5 s busy timeout) and the
/// audit checkpoint's fsync block; on the event loop (single-threaded by default) one locked
/// `warden.db` would stall every session. Jobs go to the thread over a bounded queue: callers
/// that need the answer await it, fire-and-forget writes are refused (and logged) when the
/// queue is full rather than waited for. A shared database server's driver will sit behind
/// the same [`Store`] trait.
pub struct Worker {
    tx: tokio::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&dyn Store) + Send>;

/// Jobs waiting for the store's thread.
pub(super) const QUEUE: usize = 4096;

impl Worker {
    /// Starts the thread; it ends when the worker is dropped and its queue is drained.
    pub fn start(store: Box<dyn Store>) -> std::io::Result<Worker> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("mcp-warden-store".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(store.as_ref());
                }
            })?;
        Ok(Worker { tx })
    }

    /// Runs `f` on the store's thread; the caller waits without blocking its own.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |st| {
            let _ = done.send(f(st));
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| StoreError("the store's thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError("the store's thread has stopped".into()))?
    }

    /// Queues `f` without waiting for it (`what` names it in the log if it cannot be queued).
    pub fn submit(&self, what: &'static str, f: impl FnOnce(&dyn Store) + Send + 'static) {
        if let Err(e) = self.tx.try_send(Box::new(f)) {
            tracing::error!(what, error = %e, "the approval store's queue is full or stopped; not written");
        }
    }
}

pub struct SqliteStore {
    conn: Mutex<rusqlite::Connection>,
    /// The state directory, where the audit checkpoint is kept.
    dir: PathBuf,
    key: audit::Key,
}

impl SqliteStore {
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        crate::state::ensure_dir(dir).map_err(|e| StoreError(e.to_string()))?;
        let path = dir.join(FILE);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StoreError(format!(
                "{} is a symlink; refusing to open it",
                path.display()
            )));
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
            | rusqlite::OpenFlags::SQLITE_OPEN_FULL_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&path, flags)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS audit (
                 seq INTEGER PRIMARY KEY, time TEXT NOT NULL, event TEXT NOT NULL,
                 prev TEXT NOT NULL, hash TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS approvals (
                 id TEXT PRIMARY KEY, info TEXT NOT NULL, status TEXT NOT NULL,
                 detail TEXT, updated_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS grants (
                 id TEXT PRIMARY KEY, grant_json TEXT NOT NULL);",
        )?;
        // Decisions are recorded before the held call applies them (the first one wins).
        if !has_column(&conn, "approvals", "decision")? {
            conn.execute_batch(
                "ALTER TABLE approvals ADD COLUMN decision TEXT;
                 ALTER TABLE approvals ADD COLUMN decided_by TEXT;",
            )?;
        }
        // Entries from before the chain was keyed stay as they were (keyed = 0).
        if !has_column(&conn, "audit", "keyed")? {
            conn.execute_batch("ALTER TABLE audit ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0")?;
        }
        let secret = super::control::secret(dir).map_err(|e| StoreError(e.to_string()))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
            key: audit::Key::from_secret(&secret),
        })
    }

    /// Inserts one keyed entry after `prev`; returns its hash.
    fn append(
        &self,
        tx: &rusqlite::Transaction<'_>,
        seq: u64,
        prev: &str,
        event: &str,
    ) -> Result<String, StoreError> {
        let time = audit::now_rfc3339();
        let h = self.key.link(prev, seq, &time, event);
        tx.execute(
            "INSERT INTO audit (seq, time, event, prev, hash, keyed) VALUES (?1, ?2, ?3, ?4, ?5, 1)",
            rusqlite::params![seq as i64, time, event, prev, h],
        )?;
        Ok(h)
    }
}

fn has_column(conn: &rusqlite::Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    stmt.exists([table, column])
}

/// The audit checkpoint in `dir`: `Ok(None)` when there is none, `Err` when it is unreadable.
/// Like every state file, it is read only if it is a private file and not through a symlink.
pub fn read_checkpoint(dir: &Path) -> Result<Option<audit::Checkpoint>, String> {
    let bytes =
        crate::state::read_private(dir, audit::CHECKPOINT_FILE).map_err(|e| e.to_string())?;
    parse_checkpoint(bytes.as_deref())
}

fn parse_checkpoint(bytes: Option<&[u8]>) -> Result<Option<audit::Checkpoint>, String> {
    bytes
        .map(|b| {
            serde_json::from_slice(b)
                .map_err(|_| format!("the checkpoint ({}) is unreadable", audit::CHECKPOINT_FILE))
        })
        .transpose()
}

impl Store for SqliteStore {
    fn audit(&self, event: &Value) -> Result<(), StoreError> {
        let mut conn = lock(&self.conn);
        // One transaction: read the tail, append the next link (several instances may write;
        // the transaction's write lock orders them, checkpoint included).
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (mut seq, mut prev): (u64, String) = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)),
            )
            .map(|(s, h)| (s as u64 + 1, h))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok((0, audit::GENESIS.to_string())),
                e => Err(e),
            })?;
        // Read once: parsed to check the table against it, kept to restore if the commit fails.
        let read = crate::state::read_private(&self.dir, audit::CHECKPOINT_FILE);
        let before = read.as_ref().ok().cloned().flatten();
        let checkpoint = read
            .map_err(|e| e.to_string())
            .and_then(|b| parse_checkpoint(b.as_deref()));
        let anchored = match &checkpoint {
            Ok(Some(c)) => {
                let genuine = match &c.before {
                    None => *c == self.key.checkpoint(c.entries, &c.head),
                    Some(b) => *c == self.key.intent(c.entries, &c.head, (b.entries, &b.head)),
                };
                genuine && c.names(seq, &prev)
            }
            // No checkpoint: a log from before checkpoints (all entries unkeyed), or a new one.
            Ok(None) => !tx
                .prepare("SELECT 1 FROM audit WHERE keyed = 1")?
                .exists([])?,
            Err(_) => false,
        };
        if !anchored {
            // The table does not end where the checkpoint says (a tail removed or replaced):
            // recorded in the chain first, so the evidence outlives the checkpoint written now.
            let said = checkpoint.ok().flatten();
            let found = audit::tampered(said.as_ref(), seq, &prev);
            tracing::error!(
                entries = seq,
                "audit log: the table does not end where its checkpoint says; recorded in the log"
            );
            prev = self.append(&tx, seq, &prev, &found.to_string())?;
            seq += 1;
        }
        let head = self.append(&tx, seq, &prev, &event.to_string())?;
        // Intent first (names both ends), then the commit, then the settled checkpoint: killed
        // anywhere in between, the log still ends where its checkpoint says.
        let write = |c: &audit::Checkpoint| {
            let bytes = serde_json::to_vec(c).map_err(|e| StoreError(e.to_string()))?;
            crate::state::write_atomic(&self.dir, audit::CHECKPOINT_FILE, &bytes)
                .map(|_| ())
                .map_err(|e| StoreError(format!("cannot write the audit checkpoint: {e}")))
        };
        write(&self.key.intent(seq + 1, &head, (seq, &prev)))?;
        if let Err(e) = tx.commit() {
            // The checkpoint must not name an entry that was not written.
            let _ = match before {
                Some(b) => {
                    crate::state::write_atomic(&self.dir, audit::CHECKPOINT_FILE, &b).map(|_| ())
                }
                None => std::fs::remove_file(self.dir.join(audit::CHECKPOINT_FILE)),
            };
            return Err(e.into());
        }
        write(&self.key.checkpoint(seq + 1, &head))?;
        tracing::info!(entries = seq + 1, head = %head, "audit log appended");
        Ok(())
    }

    fn approval(
        &self,
        info: &ApprovalInfo,
        status: &str,
        detail: Option<&Value>,
        only_if_open: bool,
    ) -> Result<bool, StoreError> {
        let info_json = serde_json::to_string(info).map_err(|e| StoreError(e.to_string()))?;
        let only = if only_if_open {
            " WHERE approvals.status = 'pending' AND approvals.decision IS NULL"
        } else {
            ""
        };
        let n = lock(&self.conn).execute(
            &format!("INSERT INTO approvals (id, info, status, detail, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, detail = excluded.detail, updated_at = excluded.updated_at{only}"),
            rusqlite::params![info.id, info_json, status, detail.map(|d| d.to_string()), crate::util::now_secs() as i64],
        )?;
        Ok(n > 0)
    }

    fn decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        instance: &str,
    ) -> Result<Option<ApprovalInfo>, StoreError> {
        let decision = decision.as_str();
        let conn = lock(&self.conn);
        let info: Option<String> = conn
            .query_row(
                "UPDATE approvals SET decision = ?2, decided_by = ?3, updated_at = ?4
                 WHERE id = ?1 AND status = 'pending' AND decision IS NULL
                   AND json_extract(info, '$.instance') = ?5
                 RETURNING info",
                rusqlite::params![id, decision, by, crate::util::now_secs() as i64, instance],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        Ok(info.and_then(|s| serde_json::from_str(&s).ok()))
    }

    fn ending(&self, id: &str) -> Result<Option<Ending>, StoreError> {
        let conn = lock(&self.conn);
        let row: Option<(String, Option<String>, Option<String>)> = conn
            .query_row(
                "SELECT status, decision, decided_by FROM approvals WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        Ok(match row {
            Some((status, decision, by)) => Ending::of(status, decision, by),
            None => Some(Ending::Closed("unknown".into())),
        })
    }

    fn pending(&self) -> Result<Vec<ApprovalInfo>, StoreError> {
        let conn = lock(&self.conn);
        let mut stmt = conn.prepare("SELECT info FROM approvals WHERE status = 'pending'")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|s| serde_json::from_str(&s).ok())
            .collect())
    }

    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let conn = lock(&self.conn);
        let mut stmt = conn.prepare("SELECT grant_json FROM grants ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|s| serde_json::from_str(&s).ok())
            .collect())
    }

    fn add_grant(&self, g: &Grant) -> Result<(), StoreError> {
        let json = serde_json::to_string(g).map_err(|e| StoreError(e.to_string()))?;
        lock(&self.conn).execute(
            "INSERT INTO grants (id, grant_json) VALUES (?1, ?2)",
            rusqlite::params![g.id, json],
        )?;
        Ok(())
    }

    fn remove_grant(&self, id: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.conn).execute("DELETE FROM grants WHERE id = ?1", [id])? > 0)
    }
}

/// `mcp-warden audit verify`: the chain in `dir` checked with its key and checkpoint.
pub fn verify_dir(dir: &Path) -> Result<audit::Verified, String> {
    let rows = audit_rows(dir)?;
    let key = super::control::existing_secret(dir)
        .map_err(|e| format!("cannot read the approval secret: {e}"))?
        .map(|s| audit::Key::from_secret(&s));
    let checkpoint = read_checkpoint(dir)?;
    audit::verify(&rows, key.as_ref(), checkpoint.as_ref())
}

/// Every audit row, in order (for `audit verify` and `audit list`).
pub fn audit_rows(dir: &Path) -> Result<Vec<audit::Row>, String> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(vec![]);
    }
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| e.to_string())?;
    // A log never opened by a version with keyed entries has no `keyed` column: all legacy.
    let keyed = if has_column(&conn, "audit", "keyed").map_err(|e| e.to_string())? {
        "keyed"
    } else {
        "0"
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT seq, time, event, prev, hash, {keyed} FROM audit ORDER BY seq"
        ))
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| {
            Ok(audit::Row {
                seq: r.get::<_, i64>(0)? as u64,
                time: r.get(1)?,
                event: r.get(2)?,
                prev: r.get(3)?,
                hash: r.get(4)?,
                keyed: r.get::<_, i64>(5)? != 0,
            })
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}
