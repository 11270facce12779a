//! The fleet's store: approvals, decisions, grants and the audit log in one PostgreSQL database
//! shared by every replica that names it (`[store] url`).
//!
//! Owns: the schema and its versioned migrations (run at start, under an advisory lock, so
//! replicas starting together never race); the audit chain appended under one ordering (the
//! `audit_head` row, locked `FOR UPDATE` and rewritten in the appending transaction, is both
//! the serialisation point and the chain's MAC'd checkpoint); decisions taken on any replica
//! (first writer wins, then `NOTIFY warden_decision` wakes the replica holding the call); the
//! events every replica's approvals page shows (`NOTIFY warden_event`); replica heartbeats and
//! the reaper that closes, as abandoned, the approvals of a replica whose heartbeat lapsed.
//!
//! Must not: put an `action_id` in any row or notification (every client of the database can
//! read both); let a plain call touch the database; trust a replica's clock for liveness (the
//! database's `now()` decides).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use super::{audit, ApprovalInfo, Decision, Ending, Grant};
use crate::config::StoreSettings;

/// What the database tells a replica.
#[derive(Debug, Clone)]
pub enum Notice {
    /// An approval was decided or closed somewhere (its id).
    Closed(String),
    /// An event for watchers of the approvals page, from another replica.
    Event(String),
    /// Notifications are flowing (again): any sent while they were not were missed.
    Connected,
    /// The others declared this replica gone (its heartbeat lapsed) and closed what it held.
    Lost,
    /// Tool pins were recorded or accepted (by the pin store named).
    Pins(String),
}

const LOCK_MIGRATE: i64 = 0x6d77_0001;
const LOCK_REAP: i64 = 0x6d77_0002;

/// The schema, one step per version; a database newer than the last step is refused.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "fleet: replicas, approvals, grants, audit",
        "CREATE TABLE replicas (
         id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL, version text NOT NULL,
         listen text, started_at timestamptz NOT NULL DEFAULT now(),
         heartbeat_at timestamptz NOT NULL DEFAULT now());
     CREATE TABLE approvals (
         id text PRIMARY KEY, info text NOT NULL, replica text NOT NULL,
         status text NOT NULL CHECK (status IN
             ('pending','decided','expired','cancelled','abandoned','failed')),
         decision text CHECK (decision IN ('allow-once','allow-always','deny')),
         decided_by text, detail text,
         created_at timestamptz NOT NULL DEFAULT now(),
         updated_at timestamptz NOT NULL DEFAULT now());
     CREATE INDEX approvals_pending ON approvals (replica) WHERE status = 'pending';
     CREATE TABLE grants (
         id text PRIMARY KEY, agent text NOT NULL, upstream text NOT NULL, tool text NOT NULL,
         arguments_sha256 text, expires_at bigint, grant_json text NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now());
     CREATE INDEX grants_lookup ON grants (agent, upstream, tool);
     CREATE TABLE audit (
         seq bigint PRIMARY KEY, time text NOT NULL, event text NOT NULL,
         prev text NOT NULL, hash text NOT NULL, keyed boolean NOT NULL DEFAULT true,
         replica text);
     CREATE TABLE audit_head (
         id integer PRIMARY KEY CHECK (id = 1), entries bigint NOT NULL, head text NOT NULL,
         mac text NOT NULL);",
    ),
    (
        2,
        "fleet: tool pins",
        "CREATE TABLE pins (
             upstream text NOT NULL, tool text NOT NULL, digest text NOT NULL,
             definition text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (upstream, tool));",
    ),
    (
        3,
        "fleet: the audit key's fingerprint",
        "CREATE TABLE fleet_key (id integer PRIMARY KEY CHECK (id = 1), fingerprint text NOT NULL);",
    ),
];

/// Largest `NOTIFY` payload PostgreSQL takes is 8000 bytes; bigger events go as their kind
/// and approval id (the page re-reads the list on any event).
const MAX_PAYLOAD: usize = 7900;

type Error = String;

fn db(e: impl std::fmt::Display) -> Error {
    format!("database: {e}")
}

pub struct Fleet {
    pool: deadpool_postgres::Pool,
    /// This replica's id in `replicas` (a new one after being declared gone).
    replica: std::sync::RwLock<String>,
    key: audit::Key,
    /// The schema is in place and this replica registered: store operations may run.
    ready: AtomicBool,
    /// Why it is not ready, for errors and `/readyz`.
    unready: std::sync::Mutex<String>,
    notices: broadcast::Sender<Notice>,
    listen: Option<String>,
    settings: Arc<StoreSettings>,
}

impl Fleet {
    /// The store for `settings`; connecting, migrating and registering happen in the tasks
    /// [`Fleet::start`] spawns (a replica comes up while the database is down: plain calls
    /// flow, everything that needs the store fails closed until it is back).
    pub fn new(settings: Arc<StoreSettings>, listen: Option<String>) -> Result<Fleet, Error> {
        let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
            pg_config(&settings)?,
            tls(&settings)?,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        ))
        .max_size(settings.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(db)?;
        let (notices, _) = broadcast::channel(1024);
        Ok(Fleet {
            pool,
            replica: std::sync::RwLock::new(new_replica_id()),
            key: audit::Key::from_secret(settings.secret.expose().as_bytes()),
            ready: AtomicBool::new(false),
            unready: std::sync::Mutex::new("not connected to the fleet's database yet".into()),
            notices,
            listen,
            settings,
        })
    }

    /// Starts the heartbeat (which also migrates, registers and reaps) and the listener.
    pub fn start(self: &Arc<Fleet>) -> Vec<crate::task::Owned> {
        let hb = self.clone();
        let ls = self.clone();
        vec![
            crate::task::spawn(tracing::info_span!("fleet heartbeat"), async move {
                hb.heartbeats().await
            }),
            crate::task::spawn(tracing::info_span!("fleet listener"), async move {
                ls.listener().await
            }),
        ]
    }

    /// The settings this store started with.
    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub fn replica(&self) -> String {
        self.replica
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, Error> {
        if !self.is_ready() {
            return Err(crate::util::lock(&self.unready).clone());
        }
        self.pool.get().await.map_err(db)
    }

    /// Whether the database answers now (for `/readyz`).
    pub async fn ping(&self) -> Result<(), Error> {
        let c = self.client().await?;
        tokio::time::timeout(Duration::from_secs(2), c.simple_query("SELECT 1"))
            .await
            .map_err(|_| "the database did not answer within 2 s".to_string())?
            .map(|_| ())
            .map_err(db)
    }

    // ---- approvals -------------------------------------------------------------------------

    /// Records an approval's new status with its audit entry, in one transaction. `pending`
    /// creates it (held by this replica); `only_if_open`: only while nobody has decided or
    /// closed it (`Ok(false)` otherwise, and nothing is written).
    pub async fn record(
        &self,
        info: &ApprovalInfo,
        status: &str,
        event: &Value,
        only_if_open: bool,
    ) -> Result<bool, Error> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let detail = event.get("detail").map(|d| d.to_string());
        let n = if status == "pending" {
            let info_json = serde_json::to_string(info).map_err(db)?;
            tx.execute(
                "INSERT INTO approvals (id, info, replica, status) VALUES ($1, $2, $3, 'pending')
                 ON CONFLICT (id) DO NOTHING",
                &[&info.id, &info_json, &self.replica()],
            )
            .await
        } else if only_if_open {
            tx.execute(
                "UPDATE approvals SET status = $2, detail = $3, updated_at = now()
                 WHERE id = $1 AND status = 'pending' AND decision IS NULL",
                &[&info.id, &status, &detail],
            )
            .await
        } else {
            tx.execute(
                "UPDATE approvals SET status = $2, detail = $3, updated_at = now() WHERE id = $1",
                &[&info.id, &status, &detail],
            )
            .await
        }
        .map_err(db)?;
        if n == 0 && (only_if_open || status == "pending") {
            return Ok(false);
        }
        self.append(&tx, &event.to_string()).await?;
        self.broadcast(&tx, event).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    /// A human's decision, taken on any replica: recorded if the approval is still open (the
    /// first decision wins; an approval that expired meanwhile stays expired), then the
    /// replica holding the call is woken. `Ok(None)`: no such open approval.
    pub async fn decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
    ) -> Result<Option<ApprovalInfo>, Error> {
        let c = self.client().await?;
        let decision = decision.as_str();
        let row = c
            .query_opt(
                "WITH d AS (
                     UPDATE approvals SET decision = $2, decided_by = $3, updated_at = now()
                     WHERE id = $1 AND status = 'pending' AND decision IS NULL
                     RETURNING id, info)
                 SELECT info, pg_notify('warden_decision', id)::text FROM d",
                &[&id, &decision, &by],
            )
            .await
            .map_err(db)?;
        Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
    }

    /// How approval `id` ended, if it has.
    pub async fn ending(&self, id: &str) -> Result<Option<Ending>, Error> {
        let c = self.client().await?;
        let Some(r) = c
            .query_opt(
                "SELECT status, decision, decided_by FROM approvals WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db)?
        else {
            return Ok(Some(Ending::Closed("unknown".into())));
        };
        Ok(Ending::of(r.get(0), r.get(1), r.get(2)))
    }

    /// Approvals still waiting for a human, on every replica.
    pub async fn pending(&self) -> Result<Vec<ApprovalInfo>, Error> {
        json_rows(
            &self.client().await?,
            "SELECT info FROM approvals WHERE status = 'pending' AND decision IS NULL
             ORDER BY created_at",
        )
        .await
    }

    // ---- grants ----------------------------------------------------------------------------

    pub async fn grants(&self) -> Result<Vec<Grant>, Error> {
        json_rows(
            &self.client().await?,
            "SELECT grant_json FROM grants ORDER BY created_at, id",
        )
        .await
    }

    /// A grant for this call, read at the moment of the call (a revocation anywhere applies at
    /// once).
    pub async fn grant_for(
        &self,
        agent: &str,
        upstream: &str,
        tool: &str,
        args_sha256: &str,
        now: u64,
    ) -> Result<Option<Grant>, Error> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT grant_json FROM grants
                 WHERE agent = $1 AND upstream = $2 AND tool = $3
                   AND (expires_at IS NULL OR expires_at > $4)
                   AND (arguments_sha256 IS NULL OR arguments_sha256 = $5)
                 ORDER BY created_at LIMIT 1",
                &[&agent, &upstream, &tool, &(now as i64), &args_sha256],
            )
            .await
            .map_err(db)?;
        Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
    }

    pub async fn add_grant(&self, g: &Grant) -> Result<(), Error> {
        let c = self.client().await?;
        let json = serde_json::to_string(g).map_err(db)?;
        c.execute(
            "INSERT INTO grants (id, agent, upstream, tool, arguments_sha256, expires_at, grant_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &g.id,
                &g.agent,
                &g.upstream,
                &g.tool,
                &g.arguments_sha256,
                &g.expires_at.map(|e| e as i64),
                &json,
            ],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    pub async fn remove_grant(&self, id: &str) -> Result<bool, Error> {
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM grants WHERE id = $1", &[&id])
            .await
            .map_err(db)?
            > 0)
    }

    // ---- audit -----------------------------------------------------------------------------

    /// Appends one event to the shared chain (and tells the other replicas' watchers).
    pub async fn audit(&self, event: &Value) -> Result<(), Error> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        self.append(&tx, &event.to_string()).await?;
        self.broadcast(&tx, event).await?;
        tx.commit().await.map_err(db)
    }

    /// Appends `event` in `tx`. The head row, locked for the transaction, orders concurrent
    /// appenders on every replica; a table that does not end where the (MAC'd) head says is
    /// recorded in the chain first, as the embedded store does with its checkpoint file.
    async fn append(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        event: &str,
    ) -> Result<(), Error> {
        let head = tx
            .query_opt(
                "SELECT entries, head, mac FROM audit_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(db)?
            .ok_or("database: the audit head row is missing")?;
        let said = audit::Checkpoint {
            entries: head.get::<_, i64>(0) as u64,
            head: head.get(1),
            mac: head.get(2),
            before: None,
        };
        let tail = tx
            .query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(db)?;
        let (mut seq, mut prev) = match tail {
            Some(r) => (r.get::<_, i64>(0) as u64 + 1, r.get::<_, String>(1)),
            None => (0, audit::GENESIS.to_string()),
        };
        let genuine = if said.entries == 0 && said.mac.is_empty() {
            said.head == audit::GENESIS
        } else {
            said == self.key.checkpoint(said.entries, &said.head)
        };
        if !(genuine && said.names(seq, &prev)) {
            tracing::error!(
                entries = seq,
                "audit log: the table does not end where its head row says; recorded in the log"
            );
            let found = audit::tampered(Some(&said), seq, &prev);
            prev = self.insert(tx, seq, &prev, &found.to_string()).await?;
            seq += 1;
        }
        let head = self.insert(tx, seq, &prev, event).await?;
        let c = self.key.checkpoint(seq + 1, &head);
        tx.execute(
            "UPDATE audit_head SET entries = $1, head = $2, mac = $3 WHERE id = 1",
            &[&((seq + 1) as i64), &c.head, &c.mac],
        )
        .await
        .map_err(db)?;
        tracing::info!(entries = seq + 1, head = %head, "audit log appended");
        Ok(())
    }

    async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        seq: u64,
        prev: &str,
        event: &str,
    ) -> Result<String, Error> {
        let time = audit::now_rfc3339();
        let h = self.key.link(prev, seq, &time, event);
        tx.execute(
            "INSERT INTO audit (seq, time, event, prev, hash, keyed, replica)
             VALUES ($1, $2, $3, $4, $5, true, $6)",
            &[&(seq as i64), &time, &event, &prev, &h, &self.replica()],
        )
        .await
        .map_err(db)?;
        Ok(h)
    }

    /// Queues `event` for the other replicas' watchers (sent when `tx` commits).
    async fn broadcast(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        event: &Value,
    ) -> Result<(), Error> {
        // The other replicas' pages and watchers follow approvals and grants; a refused call
        // stays in the log (a flood of them must not become a flood of notifications).
        let kind = event["kind"].as_str().unwrap_or_default();
        if !(kind.starts_with("approval.") || kind.starts_with("grant.")) {
            return Ok(());
        }
        let payload = notice_payload(&self.replica(), event);
        tx.execute("SELECT pg_notify('warden_event', $1)", &[&payload])
            .await
            .map_err(db)?;
        Ok(())
    }

    // ---- replicas --------------------------------------------------------------------------

    /// Every replica of the fleet and how long ago each was last heard of.
    pub async fn replicas(&self) -> Result<Vec<Value>, Error> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, host, pid, version, listen,
                        extract(epoch FROM started_at)::bigint,
                        (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint
                 FROM replicas ORDER BY started_at, id",
                &[],
            )
            .await
            .map_err(db)?;
        let me = self.replica();
        Ok(rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                serde_json::json!({
                    "id": id,
                    "this": id == me,
                    "host": r.get::<_, String>(1),
                    "pid": r.get::<_, i32>(2),
                    "version": r.get::<_, String>(3),
                    "listen": r.get::<_, Option<String>>(4),
                    "started_at": r.get::<_, i64>(5),
                    "heard_ms_ago": r.get::<_, i64>(6),
                })
            })
            .collect())
    }

    /// Runs the schema's missing steps (one transaction, under an advisory lock) and
    /// registers this replica.
    async fn start_up(&self) -> Result<(), Error> {
        let mut c = self.pool.get().await.map_err(db)?;
        migrate(&mut c).await?;
        // Every replica must key the one audit chain alike: the first to start records its
        // key's fingerprint, and a replica with another secret stays out (fail closed).
        let mine = self.key.fingerprint();
        let theirs: String = c
            .query_one(
                "WITH ins AS (INSERT INTO fleet_key (id, fingerprint) VALUES (1, $1)
                              ON CONFLICT (id) DO NOTHING RETURNING fingerprint)
                 SELECT coalesce((SELECT fingerprint FROM ins),
                                 (SELECT fingerprint FROM fleet_key WHERE id = 1))",
                &[&mine],
            )
            .await
            .map_err(db)?
            .get(0);
        if theirs != mine {
            return Err("this replica's fleet secret (`[store] secret_env`) is not the one the fleet's audit chain is keyed with: give every replica the same secret".into());
        }
        let id = self.replica();
        c.execute(
            "INSERT INTO replicas (id, host, pid, version, listen) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
            &[
                &id,
                &hostname(),
                &(std::process::id() as i32),
                &env!("CARGO_PKG_VERSION"),
                &self.listen,
            ],
        )
        .await
        .map_err(db)?;
        tracing::info!(replica = %id, database = %self.settings.display, "joined the fleet");
        Ok(())
    }

    /// Says this replica is alive; `Ok(false)`: the others had declared it gone.
    async fn beat(&self) -> Result<bool, Error> {
        let c = self.pool.get().await.map_err(db)?;
        let n = c
            .execute(
                "UPDATE replicas SET heartbeat_at = now() WHERE id = $1",
                &[&self.replica()],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    /// Closes, as abandoned, the approvals of replicas not heard of for `lapse` (one replica
    /// reaps at a time; the others skip).
    async fn reap(&self) -> Result<usize, Error> {
        let mut c = self.pool.get().await.map_err(db)?;
        let tx = c.transaction().await.map_err(db)?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_REAP])
            .await
            .map_err(db)?
            .get(0);
        if !locked {
            return Ok(0);
        }
        let lapse = self.settings.lapse.as_secs_f64();
        tx.execute(
            "DELETE FROM replicas WHERE heartbeat_at < now() - make_interval(secs => $1)",
            &[&lapse],
        )
        .await
        .map_err(db)?;
        let gone = tx
            .query(
                "UPDATE approvals SET status = 'abandoned', updated_at = now()
                 WHERE status = 'pending' AND replica NOT IN (SELECT id FROM replicas)
                 RETURNING id, info, replica",
                &[],
            )
            .await
            .map_err(db)?;
        for r in &gone {
            let id: String = r.get(0);
            let info: Value = serde_json::from_str(r.get::<_, &str>(1)).unwrap_or(Value::Null);
            let replica: String = r.get(2);
            tracing::warn!(approval = %id, replica = %replica, "approval held by a replica that stopped answering closed as abandoned");
            let ev = serde_json::json!({"kind": "approval.abandoned", "approval": info, "detail": {"replica": replica}});
            self.append(&tx, &ev.to_string()).await?;
            self.broadcast(&tx, &ev).await?;
            tx.execute("SELECT pg_notify('warden_decision', $1)", &[&id])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(gone.len())
    }

    async fn heartbeats(self: Arc<Fleet>) {
        let mut logged_down = false;
        loop {
            let step = if self.is_ready() {
                match self.beat().await {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        let old = self.replica();
                        *self.replica.write().unwrap_or_else(|p| p.into_inner()) = new_replica_id();
                        tracing::error!(replica = %old, "this replica was declared gone by the fleet (its heartbeat lapsed): the calls it held were closed; joining again");
                        let _ = self.notices.send(Notice::Lost);
                        self.start_up().await
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.start_up().await
            };
            match step {
                Ok(()) => {
                    if logged_down || !self.is_ready() {
                        tracing::info!(database = %self.settings.display, "the fleet's database is reachable");
                    }
                    logged_down = false;
                    self.ready.store(true, Ordering::Relaxed);
                    if let Err(e) = self.reap().await {
                        tracing::warn!(error = %e, "cannot close the approvals of gone replicas");
                    }
                }
                Err(e) => {
                    self.ready.store(false, Ordering::Relaxed);
                    // A failed step may have used a connection the database dropped (it
                    // restarted, a proxy between timed out) that still looks open: drop
                    // every idle one, so the next step and the calls after it connect anew
                    // instead of each finding another stale one.
                    self.pool.retain(|_, _| false);
                    if !logged_down {
                        tracing::error!(database = %self.settings.display, error = %e, "the fleet's store is not usable: calls that need approvals or grants are refused until it is");
                        logged_down = true;
                    }
                    *crate::util::lock(&self.unready) = e;
                }
            }
            tokio::time::sleep(self.settings.heartbeat).await;
        }
    }

    /// Listens for decisions and events on a connection of its own (the pool's connections
    /// drop notifications), reconnecting with backoff.
    async fn listener(self: Arc<Fleet>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.listen_once().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::debug!(error = %e, "fleet listener: not connected"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn listen_once(&self) -> Result<(), Error> {
        let cfg = pg_config(&self.settings)?;
        let (client, mut conn) = cfg.connect(tls(&self.settings)?).await.map_err(db)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = crate::task::spawn(tracing::Span::current(), async move {
            while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx
                            .send((n.channel().to_string(), n.payload().to_string()))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        client
            .batch_execute("LISTEN warden_decision; LISTEN warden_event; LISTEN warden_pins")
            .await
            .map_err(db)?;
        let _ = self.notices.send(Notice::Connected);
        while let Some((channel, payload)) = rx.recv().await {
            let notice = match channel.as_str() {
                "warden_decision" => Notice::Closed(payload),
                "warden_pins" => Notice::Pins(payload),
                _ => match serde_json::from_str::<Value>(&payload) {
                    Ok(v) if v["replica"].as_str() != Some(self.replica().as_str()) => {
                        Notice::Event(v["event"].to_string())
                    }
                    _ => continue,
                },
            };
            let _ = self.notices.send(notice);
        }
        drop(driver);
        Ok(())
    }
}

/// The rows of `sql`, whose one column is JSON text, decoded (a row that does not decode is
/// skipped).
async fn json_rows<T: serde::de::DeserializeOwned>(
    c: &deadpool_postgres::Client,
    sql: &str,
) -> Result<Vec<T>, Error> {
    Ok(c.query(sql, &[])
        .await
        .map_err(db)?
        .iter()
        .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
        .collect())
}

/// `{"replica", "event"}`, the event cut to its kind and approval id when too long.
fn notice_payload(replica: &str, event: &Value) -> String {
    let full = serde_json::json!({"replica": replica, "event": event}).to_string();
    if full.len() <= MAX_PAYLOAD {
        return full;
    }
    let short = serde_json::json!({
        "kind": event["kind"],
        "approval": {"id": event["approval"]["id"]},
    });
    serde_json::json!({"replica": replica, "event": short}).to_string()
}

fn new_replica_id() -> String {
    format!("{}-{}", hostname(), super::random_id(4))
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".into())
}

fn pg_config(s: &StoreSettings) -> Result<tokio_postgres::Config, Error> {
    let mut cfg: tokio_postgres::Config = s
        .url
        .expose()
        .parse()
        .map_err(|_| format!("{}: not a usable PostgreSQL URL", s.display))?;
    cfg.connect_timeout(Duration::from_secs(5))
        .keepalives_idle(Duration::from_secs(30))
        .application_name("mcp-warden");
    Ok(cfg)
}

/// A connection of its own (not the pool's), its driver running on the current runtime until
/// the client is dropped.
async fn connect(settings: &StoreSettings) -> Result<tokio_postgres::Client, Error> {
    let (client, conn) = pg_config(settings)?
        .connect(tls(settings)?)
        .await
        .map_err(db)?;
    crate::task::detach(tracing::Span::current(), async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// TLS to the database (used when the URL says `sslmode=require`): the server's certificate
/// is verified against `ca`, else the web PKI roots.
fn tls(s: &StoreSettings) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    let ca = crate::config::UpstreamTls {
        ca: s.ca.clone(),
        ..Default::default()
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
        crate::tls::client_config(Some(&ca))?,
    ))
}

/// Brings the schema up to date; refuses a database migrated by a newer mcp-warden.
async fn migrate(c: &mut tokio_postgres::Client) -> Result<(), Error> {
    let tx = c.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])
        .await
        .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS warden_schema (
             version integer PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db)?;
    let have: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM warden_schema", &[])
        .await
        .map_err(db)?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if have > known {
        return Err(format!(
            "the database's schema is version {have}, newer than this mcp-warden knows ({known}): upgrade this replica"
        ));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        tx.batch_execute(sql).await.map_err(db)?;
        if *version == 1 {
            tx.execute(
                "INSERT INTO audit_head (id, entries, head, mac) VALUES (1, 0, $1, '')",
                &[&audit::GENESIS],
            )
            .await
            .map_err(db)?;
        }
        tx.execute(
            "INSERT INTO warden_schema (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(db)?;
        tracing::info!(version, name, "database schema migrated");
    }
    tx.commit().await.map_err(db)
}

/// `mcp-warden audit list|verify` on the fleet's database: every row in order, and the head.
pub async fn audit_rows(
    settings: &Arc<StoreSettings>,
) -> Result<(Vec<audit::Row>, Option<audit::Checkpoint>), Error> {
    let client = connect(settings).await?;
    let rows = client
        .query(
            "SELECT seq, time, event, prev, hash, keyed FROM audit ORDER BY seq",
            &[],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| audit::Row {
            seq: r.get::<_, i64>(0) as u64,
            time: r.get(1),
            event: r.get(2),
            prev: r.get(3),
            hash: r.get(4),
            keyed: r.get(5),
        })
        .collect();
    let head = client
        .query_opt(
            "SELECT entries, head, mac FROM audit_head WHERE id = 1",
            &[],
        )
        .await
        .map_err(db)?
        .filter(|r| !r.get::<_, &str>(2).is_empty())
        .map(|r| audit::Checkpoint {
            entries: r.get::<_, i64>(0) as u64,
            head: r.get(1),
            mac: r.get(2),
            before: None,
        });
    Ok((rows, head))
}

/// The audit key of a fleet (its shared secret).
pub fn audit_key(settings: &StoreSettings) -> audit::Key {
    audit::Key::from_secret(settings.secret.expose().as_bytes())
}

// ---- tool pins ---------------------------------------------------------------------------------

/// A fleet's tool pins, used from the pin writer's thread (`crate::pins`): a runtime and a
/// connection of its own, so that pin checks never wait on the event loop or the pool.
pub struct PinDb {
    settings: Arc<StoreSettings>,
    rt: Option<tokio::runtime::Runtime>,
    client: Option<tokio_postgres::Client>,
    /// Names the pin store in its notifications.
    id: String,
}

/// One pin as the database has it: upstream key, tool, digest, definition (JSON text).
pub type PinRow = (String, String, String, String);

impl PinDb {
    pub fn new(settings: Arc<StoreSettings>, id: String) -> PinDb {
        PinDb {
            settings,
            rt: None,
            client: None,
            id,
        }
    }

    /// A runtime and a connection (made, and the schema migrated, when there is none).
    fn connect(&mut self) -> Result<(), Error> {
        if self.rt.is_none() {
            self.rt = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        if self.client.is_some() {
            return Ok(());
        }
        let Some(rt) = &self.rt else {
            return Err("no runtime".into());
        };
        let settings = self.settings.clone();
        // Its connection is driven while this thread runs a query (the only time it is needed).
        self.client = Some(rt.block_on(async move {
            let mut client = connect(&settings).await?;
            migrate(&mut client).await?;
            Ok::<_, Error>(client)
        })?);
        Ok(())
    }

    /// Runs `f` on a connection (its runtime to wait with). A connection made earlier may have
    /// been closed by the server while idle: a failure on one is tried once more on a new one.
    fn run<T>(
        &mut self,
        f: impl Fn(&tokio::runtime::Runtime, &mut tokio_postgres::Client, &str) -> Result<T, Error>,
    ) -> Result<T, Error> {
        for _ in 0..2 {
            let reused = self.client.is_some();
            self.connect()?;
            let (Some(rt), Some(client)) = (&self.rt, self.client.as_mut()) else {
                break;
            };
            match f(rt, client, &self.id) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.client = None;
                    if !reused {
                        return Err(e);
                    }
                }
            }
        }
        Err("the fleet's database is not reachable".into())
    }

    /// Records pins: an accepted one replaces the fleet's, a first-seen one is kept only if
    /// the fleet has none. `Ok(true)`: the fleet already had another pin for a tool seen here
    /// first (reload: the fleet's pin wins).
    pub fn save(&mut self, rows: &[crate::pins::Fresh]) -> Result<bool, Error> {
        if rows.is_empty() {
            return Ok(false);
        }
        self.run(|rt, client, id| rt.block_on(save_pins(client, id, rows)))
    }

    /// Every pin of the fleet.
    pub fn load(&mut self) -> Result<Vec<PinRow>, Error> {
        self.run(|rt, client, _| rt.block_on(load_pins(client)))
    }
}

async fn save_pins(
    client: &mut tokio_postgres::Client,
    id: &str,
    rows: &[crate::pins::Fresh],
) -> Result<bool, Error> {
    let tx = client.transaction().await.map_err(db)?;
    let mut lost = false;
    for r in rows {
        let definition = r.pin.definition.to_string();
        if r.accepted {
            tx.execute(
                "INSERT INTO pins (upstream, tool, digest, definition) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (upstream, tool) DO UPDATE
                 SET digest = excluded.digest, definition = excluded.definition, updated_at = now()",
                &[&r.upstream, &r.tool, &r.pin.digest, &definition],
            )
            .await
            .map_err(db)?;
        } else {
            let theirs = tx
                .query_one(
                    "WITH ins AS (
                         INSERT INTO pins (upstream, tool, digest, definition) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (upstream, tool) DO NOTHING RETURNING digest)
                     SELECT coalesce((SELECT digest FROM ins),
                                     (SELECT digest FROM pins WHERE upstream = $1 AND tool = $2))",
                    &[&r.upstream, &r.tool, &r.pin.digest, &definition],
                )
                .await
                .map_err(db)?;
            lost |= theirs.get::<_, Option<String>>(0).as_deref() != Some(r.pin.digest.as_str());
        }
    }
    tx.execute("SELECT pg_notify('warden_pins', $1)", &[&id])
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(lost)
}

async fn load_pins(client: &mut tokio_postgres::Client) -> Result<Vec<PinRow>, Error> {
    Ok(client
        .query("SELECT upstream, tool, digest, definition FROM pins", &[])
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// `mcp-warden check --probe`: whether the database answers, its schema, the replicas it
/// knows to be alive, and whether this config's secret is the one the fleet's audit chain is
/// keyed with. `Err` says what is wrong (never the URL or a secret).
pub async fn probe(settings: &Arc<StoreSettings>) -> Result<String, Error> {
    let client = connect(settings).await?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    let created: bool = client
        .query_one("SELECT to_regclass('warden_schema') IS NOT NULL", &[])
        .await
        .map_err(db)?
        .get(0);
    if !created {
        return Ok(format!(
            "reachable; no schema yet (the first replica creates it, version {known})"
        ));
    }
    let schema: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM warden_schema", &[])
        .await
        .map_err(db)?
        .get(0);
    if schema > known {
        return Err(format!(
            "the database's schema is version {schema}, newer than this mcp-warden knows ({known})"
        ));
    }
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM replicas WHERE heartbeat_at > now() - make_interval(secs => $1)",
            &[&settings.lapse.as_secs_f64()],
        )
        .await
        .map_err(db)?
        .get(0);
    let secret = if schema >= 3 {
        let theirs: Option<String> = client
            .query_opt("SELECT fingerprint FROM fleet_key WHERE id = 1", &[])
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        match theirs {
            Some(f) if f != audit_key(settings).fingerprint() => {
                return Err("the fleet's audit chain is keyed with another secret: give every replica the same `[store] secret_env` value".into())
            }
            Some(_) => "the fleet secret matches",
            None => "no fleet secret recorded yet",
        }
    } else {
        "no fleet secret recorded yet"
    };
    Ok(format!(
        "reachable; schema version {schema} of {known}; {live} live replica(s); {secret}"
    ))
}
