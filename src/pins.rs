//! Tool-definition pinning, the defence against "rug pulls": the first time mcp-warden sees an
//! upstream tool it records its definition (name, description, schemas, annotations) and a
//! digest in `tool-pins.json` in the state directory. A later definition with another digest is
//! a change: logged, and — with the upstream's `on_tool_change = "block"` — hidden from every
//! agent until an operator accepts it (`mcp-warden tools accept UPSTREAM TOOL`, which shows the
//! difference first).
//!
//! The file is re-read when it changes on disk (an operator's `accept` reaches running
//! instances) and written atomically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use crate::upstream::lock;

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

/// upstream → tool → bytes (see `PinStore::verified`); looked up once per listed tool.
type Verified = HashMap<String, HashMap<String, Box<[u8]>, Fast>, Fast>;
type Fast = foldhash::fast::RandomState;

pub struct PinStore {
    dir: PathBuf,
    state: Mutex<(PinFile, Option<SystemTime>)>,
    /// (upstream, tool, digest) changes already logged, to log each once.
    warned: Mutex<HashSet<(String, String, String)>>,
    /// upstream → tool → the exact bytes last found to match the tool's pin. A list build
    /// checks every tool of every upstream; an unchanged definition (the usual case) is then
    /// recognised by comparing bytes instead of decoding, canonicalising and hashing it again.
    /// Emptied whenever the pins change other than by recording a new tool.
    verified: Mutex<Verified>,
    /// New pins recorded since the file was last written ([`PinStore::flush`]).
    dirty: AtomicBool,
}

impl PinStore {
    pub fn open(dir: PathBuf) -> PinStore {
        let store = PinStore {
            dir,
            state: Mutex::new((PinFile::default(), None)),
            warned: Mutex::new(HashSet::new()),
            verified: Mutex::new(HashMap::default()),
            dirty: AtomicBool::new(false),
        };
        store.reload_if_changed();
        store
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    fn reload_if_changed(&self) {
        let path = self.path();
        let mtime = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.file_type().is_file())
            .and_then(|m| m.modified().ok());
        let mut st = lock(&self.state);
        if mtime.is_none() || mtime == st.1 {
            return;
        }
        match std::fs::read(&path).map(|b| serde_json::from_slice::<PinFile>(&b)) {
            Ok(Ok(f)) => {
                *st = (f, mtime);
                lock(&self.verified).clear();
            }
            Ok(Err(e)) => {
                tracing::error!(file = %path.display(), error = %e, "tool pin file is corrupt; keeping what was loaded")
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the tool pin file")
            }
        }
    }

    fn save(&self, file: &PinFile) {
        match serde_json::to_vec_pretty(file) {
            Ok(bytes) => match crate::state::write_atomic(&self.dir, FILE, &bytes) {
                Ok(p) => {
                    let mtime = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
                    lock(&self.state).1 = mtime;
                }
                Err(e) => tracing::error!(error = %e, "cannot write the tool pin file"),
            },
            Err(e) => tracing::error!(error = %e, "cannot serialise tool pins"),
        }
    }

    /// Checks a tool against its pin, recording it (and writing the file) if it is new.
    pub fn check(&self, upstream: &str, tool_name: &str, tool: &Value) -> Verdict {
        self.reload_if_changed();
        let verdict = self.check_loaded(upstream, tool_name, tool);
        self.flush();
        verdict
    }

    /// Re-reads the pin file if it changed on disk (another instance, or an operator's
    /// `accept`). A list build does this once, then [`PinStore::check_raw`] for each tool and
    /// [`PinStore::flush`] at the end.
    pub fn refresh(&self) {
        self.reload_if_changed();
    }

    /// [`PinStore::check`] of a tool given as its upstream's bytes, against the pins as last
    /// loaded; new pins are kept in memory until [`PinStore::flush`]. Bytes identical to the
    /// last ones found to match are trusted without being decoded again. `None` if the bytes
    /// are not a JSON value.
    pub fn check_raw(&self, upstream: &str, tool_name: &str, raw: &[u8]) -> Option<Verdict> {
        let known = lock(&self.verified)
            .get(upstream)
            .and_then(|t| t.get(tool_name))
            .is_some_and(|b| **b == *raw);
        if known {
            return Some(Verdict::Trusted);
        }
        let tool: Value = serde_json::from_slice(raw).ok()?;
        let verdict = self.check_loaded(upstream, tool_name, &tool);
        if verdict == Verdict::Trusted {
            lock(&self.verified)
                .entry(upstream.to_string())
                .or_default()
                .insert(tool_name.to_string(), raw.into());
        }
        Some(verdict)
    }

    /// Writes the pin file if new pins were recorded since it was last written.
    pub fn flush(&self) {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let file = PinFile {
                upstreams: lock(&self.state).0.upstreams.clone(),
            };
            self.save(&file);
        }
    }

    /// The check itself, against the pins in memory; a new tool is recorded there (`dirty`).
    fn check_loaded(&self, upstream: &str, tool_name: &str, tool: &Value) -> Verdict {
        let current = pin_of(tool);
        let mut st = lock(&self.state);
        let tools = st.0.upstreams.entry(upstream.to_string()).or_default();
        match tools.get(tool_name) {
            Some(p) if p.digest == current.digest => Verdict::Trusted,
            Some(p) => {
                let pinned = p.clone();
                drop(st);
                let key = (
                    upstream.to_string(),
                    tool_name.to_string(),
                    current.digest.clone(),
                );
                if lock(&self.warned).insert(key) {
                    tracing::warn!(upstream, tool = tool_name, pinned = %pinned.digest, now = %current.digest,
                        "tool definition changed since it was pinned (accept with `mcp-warden tools accept {upstream} {tool_name}`)");
                }
                Verdict::Changed { pinned, current }
            }
            None => {
                tools.insert(tool_name.to_string(), current);
                self.dirty.store(true, Ordering::Release);
                Verdict::Trusted
            }
        }
    }

    /// Pins `tool` as the accepted definition.
    pub fn accept(&self, upstream: &str, tool_name: &str, tool: &Value) {
        self.reload_if_changed();
        lock(&self.verified).clear();
        let file = {
            let mut st = lock(&self.state);
            st.0.upstreams
                .entry(upstream.to_string())
                .or_default()
                .insert(tool_name.to_string(), pin_of(tool));
            PinFile {
                upstreams: st.0.upstreams.clone(),
            }
        };
        self.save(&file);
    }

    pub fn pinned(&self, upstream: &str, tool_name: &str) -> Option<Pin> {
        self.reload_if_changed();
        lock(&self.state)
            .0
            .upstreams
            .get(upstream)
            .and_then(|t| t.get(tool_name))
            .cloned()
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
        std::thread::sleep(std::time::Duration::from_millis(20));
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
        store.refresh();
        assert_eq!(store.check_raw("fs", "t", v1), Some(Verdict::Trusted));
        assert!(!state.join(FILE).exists(), "written at flush, not per tool");
        store.flush();
        assert!(state.join(FILE).exists());
        // Remembered bytes, and other bytes with the same definition: both trusted.
        assert_eq!(store.check_raw("fs", "t", v1), Some(Verdict::Trusted));
        assert_eq!(
            store.check_raw("fs", "t", v1_reordered),
            Some(Verdict::Trusted)
        );
        assert!(matches!(
            store.check_raw("fs", "t", v2),
            Some(Verdict::Changed { .. })
        ));
        assert_eq!(store.check_raw("fs", "t", b"{not json"), None);
        assert_eq!(store.check_raw("fs", "t", v1), Some(Verdict::Trusted)); // remembered again
                                                                            // An accepted change (here by another instance) replaces what was trusted: the old
                                                                            // bytes, remembered as matching, are now a change.
        let other = PinStore::open(state.clone());
        other.accept("fs", "t", &serde_json::from_slice(v2).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.refresh();
        assert!(matches!(
            store.check_raw("fs", "t", v1),
            Some(Verdict::Changed { .. })
        ));
        assert_eq!(store.check_raw("fs", "t", v2), Some(Verdict::Trusted));
    }
}
