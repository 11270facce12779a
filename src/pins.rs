//! Tool-definition pinning, the defence against "rug pulls": the first time mcp-warden sees an
//! upstream tool it records its definition (name, description, schemas, annotations) and a
//! digest in `tool-pins.json` in the state directory. A later definition with another digest is
//! a change: logged, and — with the upstream's `on_tool_change = "block"` — hidden from every
//! agent until an operator accepts it (`mcp-warden tools accept UPSTREAM TOOL`, which shows the
//! difference first).
//!
//! Pins are kept per server, not per name: under `NAME@ID`, where ID is a digest of the server's
//! command line or URL ([`crate::config::Upstream::pin_key`]), because configs share the state
//! directory by default and two of them may give one name to different servers. Pins written
//! by earlier versions under the bare name are left alone and no longer read (those tools are
//! pinned afresh when next listed).
//!
//! The file is re-read when it changes on disk (an operator's `accept` reaches running
//! instances) and written atomically. A fleet (`[store]`) keeps its pins in its database
//! instead, so that every replica agrees: each replica loads them at start, records a tool it
//! sees first there (the first replica's pin wins; a replica that lost that race loads the
//! winner's), and reloads them when another replica records or accepts one (`NOTIFY`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use crate::util::lock;

pub const FILE: &str = "tool-pins.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pin {
    pub digest: String,
    /// The pinned definition (the parts that are digested), for showing differences.
    pub definition: Value,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PinFile {
    /// upstream → tool → pin
    #[serde(default)]
    upstreams: BTreeMap<String, BTreeMap<String, Pin>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Seen for the first time now (and recorded), or unchanged.
    Trusted,
    /// The definition differs from the pinned one.
    Changed { pinned: Pin, current: Pin },
}

/// The parts of a tool definition that are pinned, with object keys sorted so that the digest
/// does not depend on the upstream's key order.
pub fn pinned_part(tool: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "name",
        "title",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
    ] {
        if let Some(v) = tool.get(key) {
            out.insert(key.to_string(), canonical(v));
        }
    }
    Value::Object(out)
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

pub fn pin_of(tool: &Value) -> Pin {
    let definition = pinned_part(tool);
    let digest = sha2::Sha256::digest(definition.to_string().as_bytes());
    Pin {
        digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
        definition,
    }
}

type Fast = foldhash::fast::RandomState;

/// A byte range in [`Remembered::arena`].
type Span = (usize, usize);

/// The exact bytes of an upstream's tools last found to match their pins. A list build checks
/// every tool of every upstream; an unchanged definition (the usual case) is then recognised by
/// comparing bytes instead of decoding, canonicalising and hashing it again. The bytes contain
/// the tool's name, so bytes once found to match stay trusted until the pins change other than
/// by recording a new tool (the file is re-read, or a change accepted): then all is forgotten.
#[derive(Default)]
struct Remembered {
    /// The bytes, back to back: the comparisons of a build read memory in order.
    arena: Vec<u8>,
    /// The bytes of the tool at each position of the upstream's list, as last listed: where a
    /// build looks first (upstreams list their tools in the same order every time).
    order: Vec<Span>,
    /// Tool name → its bytes: where a build looks when the list was reordered.
    by_name: HashMap<String, Span, Fast>,
    /// Bytes in `arena` that nothing refers to any more (a tool's earlier definitions).
    garbage: usize,
}

impl Remembered {
    /// Past this size, an arena that is mostly garbage is dropped (everything is then checked
    /// the slow way once, and remembered again).
    const KEEP_UP_TO: usize = 1 << 20;

    fn bytes(&self, span: Span) -> &[u8] {
        self.arena.get(span.0..span.1).unwrap_or_default()
    }

    fn remember(&mut self, tool_name: &str, raw: &[u8]) -> Span {
        if self.arena.len() > Self::KEEP_UP_TO && self.garbage * 2 > self.arena.len() {
            *self = Remembered::default();
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(raw);
        let span = (start, self.arena.len());
        if let Some(old) = self.by_name.insert(tool_name.to_string(), span) {
            self.garbage += old.1 - old.0;
        }
        span
    }

    /// Notes that the tool at `pos` of the list had the bytes at `span`.
    fn place(&mut self, pos: usize, span: Span) {
        if self.order.len() <= pos {
            self.order.resize(pos + 1, (0, 0));
        }
        self.order[pos] = span;
    }
}

/// A pin file's identity: inode and modification time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp(u64, SystemTime);

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        Some(Stamp(m.ino(), m.modified().ok()?))
    }
}

/// What the store's one lock guards.
#[derive(Default)]
struct Inner {
    file: PinFile,
    /// Which pin file was last read or written: its inode and modification time. Every write
    /// replaces the file (a new inode), so a write by another instance is seen even within the
    /// coarse clock tick file times are taken from.
    stamp: Option<Stamp>,
    /// upstream → the bytes of its tools found to match their pins.
    verified: HashMap<String, Remembered, Fast>,
    /// New pins recorded since the file was last written.
    dirty: bool,
    /// Pins recorded or accepted since the last save, for a fleet's database (which takes
    /// them one by one, not as a whole file).
    fresh: Vec<Fresh>,
    /// Writes handed to the writer thread, and the last one it finished: while one is
    /// pending, memory is newer than the file, which is then not re-read.
    queued: u64,
    written: u64,
}

/// A pin to write to a fleet's database: `accepted` replaces the fleet's pin, otherwise it is
/// recorded only if the fleet has none yet.
pub struct Fresh {
    pub upstream: String,
    pub tool: String,
    pub pin: Pin,
    pub accepted: bool,
}

/// What the writer thread does.
enum Job {
    /// Write the pin file (the embedded case).
    File(u64, Vec<u8>),
    /// Write pins to the fleet's database.
    Rows(u64, Vec<Fresh>),
    /// Load the fleet's pins (at start, and when another replica changed them); `done` is
    /// told when it is loaded (or could not be).
    Reload(Option<std::sync::mpsc::Sender<()>>),
}

pub struct PinStore {
    /// The state directory (pin file), or `None` for a fleet's database.
    dir: Option<PathBuf>,
    inner: std::sync::Arc<Mutex<Inner>>,
    /// Pins are written (and fsynced, or sent to the database) on a thread of their own, never
    /// on the event loop.
    writer: Option<std::sync::mpsc::Sender<Job>>,
    /// Signalled by the writer after each write.
    wrote: std::sync::Arc<std::sync::Condvar>,
    /// (upstream, tool, digest) changes already logged, to log each once.
    warned: Mutex<HashSet<(String, String, String)>>,
    /// Names this store in the fleet's pin notifications (its own are not reloaded).
    id: String,
}

impl PinStore {
    pub fn open(dir: PathBuf) -> PinStore {
        let inner = std::sync::Arc::new(Mutex::new(Inner::default()));
        let wrote = std::sync::Arc::new(std::sync::Condvar::new());
        let (wdir, winner, wsignal) = (dir.clone(), inner.clone(), wrote.clone());
        let writer = spawn_writer(move |job| {
            let Job::File(n, bytes) = job else { return };
            let stamp = match crate::state::write_atomic(&wdir, FILE, &bytes) {
                Ok(p) => std::fs::metadata(&p).ok().and_then(|m| Stamp::of(&m)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot write the tool pin file");
                    None
                }
            };
            let mut inner = lock(&winner);
            inner.written = n;
            if n == inner.queued {
                inner.stamp = stamp;
            }
            drop(inner);
            wsignal.notify_all();
        });
        let store = PinStore {
            dir: Some(dir),
            inner,
            writer,
            wrote,
            warned: Mutex::new(HashSet::new()),
            id: String::new(),
        };
        store.reload_if_changed(&mut lock(&store.inner));
        store
    }

    /// The pins of a fleet, in its database: loaded before this returns (waiting at most a
    /// few seconds: a database that is down leaves the replica with no pins until it is back,
    /// when they are loaded and checked against again).
    pub fn open_fleet(settings: std::sync::Arc<crate::config::StoreSettings>) -> PinStore {
        let inner = std::sync::Arc::new(Mutex::new(Inner::default()));
        let wrote = std::sync::Arc::new(std::sync::Condvar::new());
        let id = crate::approval::random_id(6);
        let (winner, wsignal, wid) = (inner.clone(), wrote.clone(), id.clone());
        let mut db = crate::approval::postgres::PinDb::new(settings, wid);
        let writer = spawn_writer(move |job| match job {
            Job::Rows(n, rows) => {
                let lost = match db.save(&rows) {
                    Ok(lost) => lost,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record tool pins in the fleet's database; retried with the next ones");
                        lock(&winner).fresh.extend(rows);
                        false
                    }
                };
                // Another replica pinned one of these first: its pin is the fleet's.
                if lost {
                    load(&mut db, &winner);
                }
                lock(&winner).written = n;
                wsignal.notify_all();
            }
            Job::Reload(done) => {
                load(&mut db, &winner);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Job::File(..) => {}
        });
        let store = PinStore {
            dir: None,
            inner,
            writer,
            wrote,
            warned: Mutex::new(HashSet::new()),
            id,
        };
        let (done, loaded) = std::sync::mpsc::channel();
        if store.send(Job::Reload(Some(done))) {
            let _ = loaded.recv_timeout(std::time::Duration::from_secs(6));
        }
        store
    }

    /// Loads the fleet's pins again (another replica recorded or accepted one: `from` names
    /// the store that did, and this store's own notifications are skipped; `None`: notices
    /// may have been missed).
    pub fn reload(&self, from: Option<&str>) {
        if self.dir.is_none() && from != Some(self.id.as_str()) {
            self.send(Job::Reload(None));
        }
    }

    fn send(&self, job: Job) -> bool {
        match &self.writer {
            Some(w) => w.send(job).is_ok(),
            None => false,
        }
    }

    /// Re-reads the pin file if it changed on disk (another instance, or an operator's
    /// `accept`).
    fn reload_if_changed(&self, inner: &mut Inner) {
        let Some(dir) = &self.dir else { return };
        if inner.written < inner.queued {
            return; // our own write is on its way: memory is newer
        }
        let path = dir.join(FILE);
        let stamp = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.file_type().is_file())
            .and_then(|m| Stamp::of(&m));
        if stamp.is_none() || stamp == inner.stamp {
            return;
        }
        match std::fs::read(&path).map(|b| serde_json::from_slice::<PinFile>(&b)) {
            Ok(Ok(f)) => {
                inner.file = f;
                inner.stamp = stamp;
                inner.verified.clear();
            }
            Ok(Err(e)) => {
                tracing::error!(file = %path.display(), error = %e, "tool pin file is corrupt; keeping what was loaded")
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the tool pin file")
            }
        }
    }

    /// Hands the pins to the writer thread: the whole file, atomically (its new modification
    /// time remembered), or the new ones to the fleet's database.
    fn save(&self, inner: &mut Inner) {
        inner.dirty = false;
        let fresh = std::mem::take(&mut inner.fresh);
        let n = inner.queued + 1;
        let job = if self.dir.is_some() {
            match serde_json::to_vec_pretty(&inner.file) {
                Ok(b) => Job::File(n, b),
                Err(e) => return tracing::error!(error = %e, "cannot serialise tool pins"),
            }
        } else {
            Job::Rows(n, fresh)
        };
        if self.writer.is_none() {
            return;
        }
        inner.queued = n;
        if !self.send(job) {
            inner.queued -= 1;
            tracing::error!("the pin writer stopped: new pins are kept in memory only");
        }
    }

    /// Waits (bounded) until every pin handed to the writer is on disk: for operator commands
    /// that exit right after pinning, and tests.
    pub fn flush(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut inner = lock(&self.inner);
        while inner.written < inner.queued {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return tracing::error!("tool pins were not written within 5 s");
            }
            inner = self
                .wrote
                .wait_timeout(inner, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Starts checking a list of tools: the pin file is re-read if it changed on disk, the
    /// store is locked once for the whole list, and the tools seen for the first time are
    /// written in one go when the batch ends.
    pub fn batch(&self) -> Batch<'_> {
        let mut inner = lock(&self.inner);
        self.reload_if_changed(&mut inner);
        Batch { store: self, inner }
    }

    /// Checks one tool against its pin, recording it (and writing the file) if it is new. The
    /// proxy checks whole lists ([`PinStore::batch`]); this is for tests of single tools.
    #[cfg(test)]
    fn check(&self, upstream: &str, tool_name: &str, tool: &Value) -> Verdict {
        let v = self.batch().upstream(upstream).check_value(tool_name, tool);
        self.flush();
        v
    }

    /// Pins `tool` as the accepted definition.
    pub fn accept(&self, upstream: &str, tool_name: &str, tool: &Value) {
        let mut inner = lock(&self.inner);
        self.reload_if_changed(&mut inner);
        inner.verified.clear();
        let pin = pin_of(tool);
        inner.fresh.push(Fresh {
            upstream: upstream.to_string(),
            tool: tool_name.to_string(),
            pin: pin.clone(),
            accepted: true,
        });
        inner
            .file
            .upstreams
            .entry(upstream.to_string())
            .or_default()
            .insert(tool_name.to_string(), pin);
        self.save(&mut inner);
        drop(inner);
        self.flush();
    }

    /// The pinned definitions of an upstream's tools (by its pin key): what it offered when
    /// last listed, as tool objects.
    pub fn tools_of(&self, upstream: &str) -> Vec<Value> {
        self.of_upstream(upstream, |tools| {
            tools.values().map(|p| p.definition.clone()).collect()
        })
        .unwrap_or_default()
    }

    pub fn pinned(&self, upstream: &str, tool_name: &str) -> Option<Pin> {
        self.of_upstream(upstream, |tools| tools.get(tool_name).cloned())
            .flatten()
    }

    /// `f` of an upstream's pins as they are now (read again if another process changed them).
    fn of_upstream<T>(
        &self,
        upstream: &str,
        f: impl FnOnce(&BTreeMap<String, Pin>) -> T,
    ) -> Option<T> {
        let mut inner = lock(&self.inner);
        self.reload_if_changed(&mut inner);
        inner.file.upstreams.get(upstream).map(f)
    }
}

/// Starts the thread that writes pins (it ends when the store, the only sender, is dropped).
fn spawn_writer(mut run: impl FnMut(Job) + Send + 'static) -> Option<std::sync::mpsc::Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("mcp-warden-pins".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                run(job);
            }
        })
        .map_err(|e| tracing::error!(error = %e, "cannot start the pin writer: new pins are kept in memory only"))
        .ok()
        .map(|_| tx)
}

/// Replaces the pins in memory with the fleet's (keeping those not written there yet).
fn load(db: &mut crate::approval::postgres::PinDb, inner: &Mutex<Inner>) {
    let rows = match db.load() {
        Ok(rows) => rows,
        Err(e) => {
            return tracing::error!(error = %e, "cannot load the fleet's tool pins; loaded again when the database is back")
        }
    };
    let mut file = PinFile::default();
    for (upstream, tool, digest, definition) in rows {
        let definition = serde_json::from_str(&definition).unwrap_or(Value::Null);
        file.upstreams
            .entry(upstream)
            .or_default()
            .insert(tool, Pin { digest, definition });
    }
    let mut inner = lock(inner);
    // Not written there yet: an accepted pin replaces the fleet's, a first-seen one only
    // stands where the fleet has none.
    for f in &inner.fresh {
        let tools = file.upstreams.entry(f.upstream.clone()).or_default();
        if f.accepted {
            tools.insert(f.tool.clone(), f.pin.clone());
        } else {
            tools.entry(f.tool.clone()).or_insert_with(|| f.pin.clone());
        }
    }
    inner.file = file;
    inner.verified.clear();
}

/// Pin checks of a list of tools under one lock ([`PinStore::batch`]); new pins are written
/// when it is dropped.
pub struct Batch<'a> {
    store: &'a PinStore,
    inner: MutexGuard<'a, Inner>,
}

impl Batch<'_> {
    /// The checks of one upstream's tools.
    pub fn upstream<'b>(&'b mut self, name: &'b str) -> UpstreamPins<'b> {
        let inner = &mut *self.inner;
        UpstreamPins {
            name,
            verified: inner.verified.entry(name.to_string()).or_default(),
            pos: 0,
            file: &mut inner.file,
            dirty: &mut inner.dirty,
            fresh: &mut inner.fresh,
            warned: &self.store.warned,
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.inner.dirty {
            self.store.save(&mut self.inner);
        }
    }
}

/// The pins of one upstream's tools, within a [`Batch`].
pub struct UpstreamPins<'b> {
    name: &'b str,
    verified: &'b mut Remembered,
    /// The position in the upstream's list of the next tool checked.
    pos: usize,
    file: &'b mut PinFile,
    dirty: &'b mut bool,
    fresh: &'b mut Vec<Fresh>,
    warned: &'b Mutex<HashSet<(String, String, String)>>,
}

impl UpstreamPins<'_> {
    /// Checks a tool given as its upstream's bytes; a tool seen for the first time is pinned.
    /// Bytes identical to the last ones found to match are trusted without being decoded
    /// again. `None` if the bytes are not a JSON value.
    pub fn check_raw(&mut self, tool_name: &str, raw: &[u8]) -> Option<Verdict> {
        let pos = self.pos;
        self.pos += 1;
        let known = &mut *self.verified;
        if let Some(&span) = known.order.get(pos) {
            if known.bytes(span) == raw {
                return Some(Verdict::Trusted);
            }
        }
        let span = match known.by_name.get(tool_name) {
            Some(&span) if known.bytes(span) == raw => span,
            _ => {
                let tool: Value = serde_json::from_slice(raw).ok()?;
                let verdict = self.check_value(tool_name, &tool);
                if verdict != Verdict::Trusted {
                    return Some(verdict);
                }
                self.verified.remember(tool_name, raw)
            }
        };
        self.verified.place(pos, span);
        Some(Verdict::Trusted)
    }

    fn check_value(&mut self, tool_name: &str, tool: &Value) -> Verdict {
        let current = pin_of(tool);
        let pinned = self
            .file
            .upstreams
            .get(self.name)
            .and_then(|t| t.get(tool_name));
        match pinned {
            Some(p) if p.digest == current.digest => Verdict::Trusted,
            Some(p) => {
                let pinned = p.clone();
                let key = (
                    self.name.to_string(),
                    tool_name.to_string(),
                    current.digest.clone(),
                );
                if lock(self.warned).insert(key) {
                    let upstream = self.name;
                    tracing::warn!(upstream, tool = tool_name, pinned = %pinned.digest, now = %current.digest,
                        "tool definition changed since it was pinned (accept with `mcp-warden tools accept {upstream} {tool_name}`)");
                }
                Verdict::Changed { pinned, current }
            }
            None => {
                self.fresh.push(Fresh {
                    upstream: self.name.to_string(),
                    tool: tool_name.to_string(),
                    pin: current.clone(),
                    accepted: false,
                });
                self.file
                    .upstreams
                    .entry(self.name.to_string())
                    .or_default()
                    .insert(tool_name.to_string(), current);
                *self.dirty = true;
                Verdict::Trusted
            }
        }
    }
}

/// A line diff of two JSON values (pretty-printed), `-` for the pinned side, `+` for the new.
pub fn diff(old: &Value, new: &Value) -> String {
    let a: Vec<String> = serde_json::to_string_pretty(old)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    let b: Vec<String> = serde_json::to_string_pretty(new)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    // Longest common subsequence table: definitions are small.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_key_order_and_unpinned_fields() {
        let a = serde_json::json!({"name":"t","description":"d","inputSchema":{"type":"object","properties":{"x":{}}},"_meta":{"a":1}});
        let b = serde_json::json!({"inputSchema":{"properties":{"x":{}},"type":"object"},"description":"d","name":"t","_meta":{"a":2}});
        assert_eq!(pin_of(&a).digest, pin_of(&b).digest);
        let c = serde_json::json!({"name":"t","description":"d (now also exfiltrates ~/.ssh)","inputSchema":{"type":"object"}});
        assert_ne!(pin_of(&a).digest, pin_of(&c).digest);
    }

    #[test]
    fn first_seen_is_pinned_changes_are_reported_until_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::open(dir.path().join("state"));
        let v1 = serde_json::json!({"name":"t","description":"reads a file"});
        let v2 = serde_json::json!({"name":"t","description":"reads a file and sends it away"});
        assert_eq!(store.check("fs", "t", &v1), Verdict::Trusted);
        assert_eq!(store.check("fs", "t", &v1), Verdict::Trusted);
        assert!(matches!(
            store.check("fs", "t", &v2),
            Verdict::Changed { .. }
        ));
        // A second instance reading the same file agrees.
        let other = PinStore::open(dir.path().join("state"));
        assert!(matches!(
            other.check("fs", "t", &v2),
            Verdict::Changed { .. }
        ));
        other.accept("fs", "t", &v2);
        other.flush();
        assert_eq!(
            store.check("fs", "t", &v2),
            Verdict::Trusted,
            "accept reaches running instances"
        );
        let d = diff(&pinned_part(&v1), &pinned_part(&v2));
        assert!(
            d.contains("- ") && d.contains("+ ") && d.contains("sends it away"),
            "{d}"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod raw_tests {
    use super::*;

    /// What a list build does: the bytes of each tool, pins written once at the end, and the
    /// remembered bytes never outliving the pin they matched.
    #[test]
    fn raw_checks_remember_matching_bytes_and_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let store = PinStore::open(state.clone());
        let v1 = br#"{"name":"t","description":"reads a file"}"#;
        let v1_reordered = br#"{"description":"reads a file","name":"t"}"#;
        let v2 = br#"{"name":"t","description":"reads a file and sends it away"}"#;
        {
            let mut batch = store.batch();
            let mut fs = batch.upstream("fs");
            assert_eq!(fs.check_raw("t", v1), Some(Verdict::Trusted));
            assert!(
                !state.join(FILE).exists(),
                "written when the batch ends, not per tool"
            );
        }
        store.flush();
        assert!(state.join(FILE).exists());
        let check = |tool: &[u8]| store.batch().upstream("fs").check_raw("t", tool);
        // Remembered bytes, and other bytes with the same definition: both trusted.
        assert_eq!(check(v1), Some(Verdict::Trusted));
        assert_eq!(check(v1_reordered), Some(Verdict::Trusted));
        assert!(matches!(check(v2), Some(Verdict::Changed { .. })));
        assert_eq!(check(b"{not json"), None);
        assert_eq!(check(v1), Some(Verdict::Trusted)); // remembered again
                                                       // The same tool name under another upstream is another pin.
        assert_eq!(
            store.batch().upstream("other").check_raw("t", v2),
            Some(Verdict::Trusted)
        );
        assert!(matches!(check(v2), Some(Verdict::Changed { .. })));
        // An accepted change (here by another instance) replaces what was trusted: the old
        // bytes, remembered as matching, are now a change.
        store.flush();
        let other = PinStore::open(state.clone());
        other.accept("fs", "t", &serde_json::from_slice(v2).unwrap());
        other.flush();
        assert!(matches!(check(v1), Some(Verdict::Changed { .. })));
        assert_eq!(check(v2), Some(Verdict::Trusted));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod order_tests {
    use super::*;

    fn tool(name: &str, description: &str) -> Vec<u8> {
        serde_json::json!({"name": name, "description": description})
            .to_string()
            .into_bytes()
    }

    /// Builds see the tools by position first, then by name: neither may trust bytes that are
    /// not the ones that matched — a changed tool at a remembered position, a tool moved to
    /// where another one was, a list that grew or shrank.
    #[test]
    fn positions_and_names_never_trust_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::open(dir.path().to_path_buf());
        let list = |tools: &[&[u8]]| -> Vec<Verdict> {
            let mut batch = store.batch();
            let mut up = batch.upstream("fs");
            tools
                .iter()
                .map(|t| up.check_raw(&ItemName::of(t), t).unwrap())
                .collect()
        };
        let (a, b, c) = (
            tool("a", "reads a file"),
            tool("b", "writes"),
            tool("c", "lists"),
        );
        let a2 = tool("a", "sends a file"); // the same length
        let trusted = |n| vec![Verdict::Trusted; n];
        assert_eq!(list(&[&a, &b, &c]), trusted(3));
        assert_eq!(list(&[&a, &b, &c]), trusted(3));
        // Reordered, shorter, longer: the same definitions, still trusted.
        assert_eq!(list(&[&c, &a, &b]), trusted(3));
        assert_eq!(list(&[&b]), trusted(1));
        assert_eq!(list(&[&a, &b, &c]), trusted(3));
        // A changed definition where the old one was remembered, and moved elsewhere.
        let v = list(&[&a2, &b, &c]);
        assert!(matches!(v[0], Verdict::Changed { .. }), "{v:?}");
        assert_eq!(v[1..], trusted(2));
        let v = list(&[&b, &c, &a2]);
        assert!(matches!(v[2], Verdict::Changed { .. }), "{v:?}");
        // The old one is still the pinned one.
        assert_eq!(list(&[&a, &b, &c]), trusted(3));
        // The same bytes under another upstream are checked against that upstream's pins.
        let mut batch = store.batch();
        let mut other = batch.upstream("other");
        assert_eq!(other.check_raw("a", &a2), Some(Verdict::Trusted)); // first seen there
    }

    struct ItemName;
    impl ItemName {
        fn of(raw: &[u8]) -> String {
            serde_json::from_slice::<Value>(raw).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        }
    }
}
