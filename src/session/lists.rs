//! A session's merged lists (tools, prompts, resources, templates), kept as snapshots that are
//! published as each upstream's list arrives, so that one slow upstream never holds up calls to
//! the others (no lock is held while an upstream is asked).
//!
//! Owns: when a list is (re)built, the per-kind snapshots and their generations, and what a
//! reader waits for: the whole list (`tools/list`), or just enough of it to resolve one name
//! (`tools/call`). Must not: decide what an agent sees (that is [`super::catalog`] and
//! [`crate::policy`]), or talk to upstreams other than through the session's `fetch_all`.
//!
//! A name is resolved from a partial snapshot only when no upstream ordered before the one that
//! has it, and not in yet, could claim it (names that collide are given to upstreams in that
//! order): one whose namespace prefix the name lacks cannot. So the answer never changes when
//! the rest arrives.

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use super::catalog::List;
use super::*;

/// One kind's latest list.
#[derive(Clone)]
pub(super) struct Snapshot {
    /// Bumped by every invalidation: a build for an older generation publishes nothing.
    generation: u64,
    /// A build for this generation has been started.
    started: bool,
    /// Every upstream's list is in.
    complete: bool,
    pub list: Arc<List>,
    /// The upstreams (slot ids) in the session's order, which is the order names are given in,
    /// each with the prefix every name it can be given starts with (its namespace), if any.
    order: Arc<[(usize, Option<String>)]>,
    /// Those whose lists are not in yet.
    pending: Arc<[usize]>,
}

impl Snapshot {
    fn empty(generation: u64) -> Snapshot {
        Snapshot {
            generation,
            started: false,
            complete: false,
            list: Arc::new(List::empty()),
            order: Arc::from([]),
            pending: Arc::from([]),
        }
    }

    /// `name` resolves here as it will in the complete list.
    fn settles(&self, name: &str) -> bool {
        let Some(e) = self.list.get(name) else {
            return false;
        };
        // An upstream before it that is not in yet could still claim the name, unless its
        // namespace keeps it from names outside its prefix.
        self.order
            .iter()
            .take_while(|(i, _)| *i != e.upstream)
            .filter(|(i, _)| self.pending.contains(i))
            .all(|(_, prefix)| prefix.as_deref().is_some_and(|p| !name.starts_with(p)))
    }
}

pub(super) struct Lists {
    kinds: [watch::Sender<Snapshot>; 4],
    /// The running build of each kind (replaced, and so aborted, by a newer one).
    /// The running build of each kind and the generation it builds.
    builds: std::sync::Mutex<[Option<(u64, crate::task::Owned)>; 4]>,
}

impl Default for Lists {
    fn default() -> Self {
        Lists {
            kinds: std::array::from_fn(|_| watch::Sender::new(Snapshot::empty(0))),
            builds: Default::default(),
        }
    }
}

fn index(kind: ListKind) -> usize {
    kind as usize
}

impl Lists {
    /// The current list of `kind` if it is complete (what the agent was last shown).
    pub(super) fn current(&self, kind: ListKind) -> Option<Arc<List>> {
        let s = self.kinds[index(kind)].borrow();
        s.complete.then(|| s.list.clone())
    }

    /// Forgets the lists of `kinds`; the next reader starts a new build.
    pub(super) fn invalidate(&self, kinds: &[ListKind]) {
        for &k in kinds {
            self.kinds[index(k)].send_modify(|s| *s = Snapshot::empty(s.generation + 1));
        }
    }

    /// Stops every build (the session is closing).
    pub(super) fn close(&self) {
        *crate::util::lock(&self.builds) = Default::default();
    }
}

impl Session {
    /// The whole list of `kind`, every upstream that is up included.
    pub(super) async fn list(&self, kind: ListKind) -> Arc<List> {
        self.wait_list(kind, |s| s.complete).await
    }

    /// A list in which `name` resolves as it will in the complete list, or the complete list
    /// (where it may not resolve at all). Calls to an upstream whose list is in do not wait for
    /// the others.
    pub(super) async fn list_for(&self, kind: ListKind, name: &str) -> Arc<List> {
        self.wait_list(kind, |s| s.complete || s.settles(name))
            .await
    }

    async fn wait_list(&self, kind: ListKind, enough: impl Fn(&Snapshot) -> bool) -> Arc<List> {
        let tx = &self.lists.kinds[index(kind)];
        let mut rx = tx.subscribe();
        loop {
            self.start_build(kind);
            // Woken by every publication; an invalidation in between (not started) means a
            // new build is needed.
            let Ok(s) = rx.wait_for(|s| enough(s) || !s.started).await else {
                return Arc::new(List::empty());
            };
            if enough(&s) {
                return s.list.clone();
            }
        }
    }

    /// Starts the build of `kind`'s current generation unless one is running.
    fn start_build(&self, kind: ListKind) {
        let tx = &self.lists.kinds[index(kind)];
        // The common case (a build already ran or runs) under the read lock only.
        if tx.borrow().started {
            return;
        }
        let mut generation = 0;
        let starting = tx.send_if_modified(|s| {
            if s.started {
                return false;
            }
            s.started = true;
            generation = s.generation;
            true
        });
        if !starting {
            return;
        }
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let span = tracing::debug_span!("list build", session = %self.id, ?kind);
        let build = crate::task::spawn(span, async move { this.build(kind, generation).await });
        // Kept unless a newer generation's build got here first (an invalidation between this
        // build's start and now): replacing that one's handle would abort it, and leave its
        // readers waiting for a list no build makes.
        let mut builds = crate::util::lock(&self.lists.builds);
        match &builds[index(kind)] {
            Some((newer, _)) if *newer > generation => drop(build),
            _ => builds[index(kind)] = Some((generation, build)),
        }
    }

    /// Asks every upstream for its list at once and publishes the merged list each time one
    /// answers.
    async fn build(self: Arc<Self>, kind: ListKind, generation: u64) {
        let tx = &self.lists.kinds[index(kind)];
        let ids = self.slot_ids();
        // Tools and prompts of a namespaced upstream are all named `NS__…`, unless the agent
        // renames tools (to anything); resources keep the upstream's URIs.
        let renames = kind == ListKind::Tools
            && self
                .agent()
                .is_some_and(|a| a.rewrite.values().any(|r| r.rename.is_some()));
        let order: Arc<[(usize, Option<String>)]> = ids
            .iter()
            .map(|&i| {
                let prefix = match kind {
                    ListKind::Tools | ListKind::Prompts if !renames => self
                        .slot(i)
                        .and_then(|s| s.cfg().namespace.clone())
                        .map(|ns| format!("{ns}{}", crate::policy::naming::SEPARATOR)),
                    _ => None,
                };
                (i, prefix)
            })
            .collect();
        let mut pending: Vec<usize> = ids.clone();
        // (position in the session's order, what that upstream listed), in that order.
        let mut done: Vec<(usize, Fetched)> = Vec::with_capacity(ids.len());
        let mut fetches: FuturesUnordered<_> = ids
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                let this = &self;
                async move { (pos, i, this.fetch_all(i, kind).await) }
            })
            .collect();
        let publish = |list: List, pending: &[usize]| {
            tx.send_if_modified(|s| {
                if s.generation != generation {
                    return false; // invalidated meanwhile: a newer build publishes
                }
                s.list = Arc::new(list);
                s.order = order.clone();
                s.pending = Arc::from(pending);
                s.complete = pending.is_empty();
                true
            });
        };
        publish(List::empty(), &pending);
        let mut failed = false;
        while let Some((pos, i, fetched)) = fetches.next().await {
            pending.retain(|&p| p != i);
            failed |= fetched.is_err();
            if let Ok(Some(f)) = fetched {
                let at = done.partition_point(|(p, _)| *p < pos);
                done.insert(at, (pos, f));
            }
            // The merge runs once per upstream: cheap (about half a millisecond for 1,000
            // tools), and what makes the partial lists usable. Tool pins are checked in
            // memory; the pin file is written on the pin store's own thread.
            let agent = self.agent();
            let ctx = catalog::PolicyCtx {
                agent: agent.as_deref(),
                pins: self.pins.as_deref(),
            };
            let fetched = done.iter().map(|(_, f)| f.clone()).collect();
            let list = catalog::merge(kind, fetched, &ctx);
            publish(list, &pending);
        }
        if failed {
            // Answered as it is, but not kept: the next request builds it again.
            tx.send_if_modified(|s| {
                let ours = s.generation == generation;
                if ours {
                    s.started = false;
                }
                ours
            });
        }
    }
}

/// An upstream that is up failed to list (see [`Session::fetch_all`]).
#[derive(Debug)]
pub(super) struct ListingFailed;

impl Session {
    /// An upstream says a list changed: re-fetch, and tell the agent only if *its* view changed
    /// (a change to something it cannot see is not its business, and costs it a prompt-cache
    /// miss for nothing).
    pub(super) fn upstream_lists_changed(&self, kinds: &'static [ListKind]) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        // Bounded by the lists' timeouts.
        let span = tracing::debug_span!("lists changed", session = %self.id);
        crate::task::detach(span, async move {
            let mut changed = vec![];
            for &k in kinds {
                let old = this.lists.current(k);
                this.lists.invalidate(&[k]);
                let new = this.list(k).await;
                if !old.is_some_and(|o| o.same_view(&new)) {
                    changed.push(k);
                }
            }
            if changed.is_empty() {
                tracing::debug!(session = %this.id, "upstream list change invisible to this agent");
            } else {
                this.notify_changed(&changed);
            }
        });
    }

    /// Invalidates cached lists and tells the agent.
    pub(super) fn lists_changed(&self, kinds: &[ListKind]) {
        self.invalidate(kinds);
        self.notify_changed(kinds);
    }

    /// Drops cached lists; the next request rebuilds them.
    pub(super) fn invalidate(&self, kinds: &[ListKind]) {
        self.lists.invalidate(kinds);
    }

    pub(super) fn notify_changed(&self, kinds: &[ListKind]) {
        let mut sent = [false; 3];
        for &k in kinds {
            let (i, method) = match k {
                ListKind::Tools => (0, "notifications/tools/list_changed"),
                ListKind::Prompts => (1, "notifications/prompts/list_changed"),
                ListKind::Resources | ListKind::Templates => {
                    (2, "notifications/resources/list_changed")
                }
            };
            if lock(&self.announced)[i] && !std::mem::replace(&mut sent[i], true) {
                self.send_general(jsonrpc::notification(method, None));
            }
        }
    }

    /// What upstream `idx` lists. `Ok(None)`: nothing to list (not up: left out for now, the
    /// agent hears `list_changed` when it is; or it lacks the capability). `Err`: it is up but
    /// its listing failed — left out, and the list is built again at the next request instead
    /// of being kept (an upstream whose tokens were missing, say, lists fine once signed in).
    pub(super) async fn fetch_all(
        &self,
        idx: usize,
        kind: ListKind,
    ) -> Result<Option<Fetched>, ListingFailed> {
        // Lists never wait for an upstream that is (re)starting: they show what is up now, and
        // the agent hears `list_changed` when the rest arrives.
        let Some(conn) = self.live(idx) else {
            tracing::debug!(upstream = %self.slot(idx).map(|s| s.name()).unwrap_or_default(), "not up: left out of the list for now");
            self.reconnect_in_background(idx);
            if kind == ListKind::Tools {
                return Ok(self.pinned_while_signed_out(idx));
            }
            return Ok(None);
        };
        if !conn.has_capability(kind.capability()) {
            tracing::debug!(upstream = %conn.name(), capability = kind.capability(), "upstream lacks the capability");
            return Ok(None);
        }
        let mut items = vec![];
        let mut cursor: Option<String> = None;
        // Bounded: a misbehaving upstream could hand out cursors forever.
        for _ in 0..1000 {
            let params = match &cursor {
                Some(c) => serde_json::json!({"cursor": c}),
                None => serde_json::json!({}),
            };
            let page = match conn.call(kind.method(), params, LIST_TIMEOUT).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(upstream = %conn.name(), error = %e, "listing failed");
                    return Err(ListingFailed);
                }
            };
            match catalog::page_items(kind, &page, &mut items) {
                Ok(Some(next)) => cursor = Some(next),
                Ok(None) => break,
                // The first page refused: the upstream listed nothing. A later one: what came
                // before stands (a cursor it no longer honours).
                Err(e) if cursor.is_none() => {
                    tracing::warn!(upstream = %conn.name(), method = kind.method(), "{e}");
                    return Err(ListingFailed);
                }
                Err(e) => {
                    tracing::warn!(upstream = %conn.name(), method = kind.method(), "{e}");
                    break;
                }
            }
        }
        if kind == ListKind::Tools {
            items.retain(|raw| conn.note_tool(raw));
            crate::metrics::METRICS.tools_listed(conn.name(), items.len());
        }
        let Some(cfg) = self.slot(idx).map(|s| s.cfg()) else {
            return Ok(None);
        };
        Ok(Some(Fetched {
            upstream: idx,
            namespace: cfg.namespace.clone(),
            cfg,
            items,
            signed_out: false,
        }))
    }

    pub(super) async fn answer_list(&self, msg: &Message, kind: ListKind) -> Message {
        let id = msg.id_str().unwrap_or("null");
        let list = self.list(kind).await;
        #[derive(serde::Deserialize)]
        struct P {
            cursor: Option<String>,
        }
        let cursor = msg
            .params()
            .and_then(|p| serde_json::from_str::<P>(p).ok())
            .and_then(|p| p.cursor);
        let start = match cursor.as_deref() {
            None => 0,
            Some(c) => match c.strip_prefix("mw:").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n <= list.entries.len() => n,
                _ => {
                    return jsonrpc::error_response(
                        Some(id),
                        code::INVALID_PARAMS,
                        "Invalid cursor",
                    )
                }
            },
        };
        let page = self.cfg().proxy.page_size;
        let end = if page == 0 {
            list.entries.len()
        } else {
            (start + page).min(list.entries.len())
        };
        let mut body = Vec::with_capacity(
            64 + list.entries[start..end]
                .iter()
                .map(|e| e.size_hint() + 3)
                .sum::<usize>(),
        );
        body.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(b",\"result\":{\"");
        body.extend_from_slice(kind.field().as_bytes());
        body.extend_from_slice(b"\":[");
        for (i, e) in list.entries[start..end].iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            e.write_to(&mut body);
        }
        body.push(b']');
        if end < list.entries.len() {
            body.extend_from_slice(format!(",\"nextCursor\":\"mw:{end}\"").as_bytes());
        }
        body.extend_from_slice(b"}}");
        Message::parse(Bytes::from(body)).unwrap_or_else(|_| {
            jsonrpc::error_response(Some(id), code::INTERNAL_ERROR, "Internal error")
        })
    }
}
