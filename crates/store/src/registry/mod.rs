//! The registry cache: what the hot paths (the A2A proxy, heartbeats, agent authentication)
//! read, kept in memory so that they need no database round trip per request.
//!
//! It holds workspace rows by id (with their inbound secret), live token hashes by the
//! workspace they authenticate, and "this workspace's queue is empty" flags. Every entry is
//! filled from the database on a miss and is *coherent* by three rules:
//!
//! 1. **Writes in this process** forget what they change before they return (the
//!    repositories call [`Registry::forget_workspace`], [`Registry::forget_tokens_of`],
//!    [`Registry::queue_not_empty`]), so a revoked token or a removed workspace is refused by
//!    the next request here.
//! 2. **Writes on another replica** (PostgreSQL) reach this one through `LISTEN/NOTIFY` on
//!    [`CACHE_CHANNEL`]: database triggers notify on commit whenever a workspace's routing
//!    fields, a token or the queue change, and [`listen`] forgets the entry named. While the
//!    listener is not listening (at start, after a lost connection) the cache is *untrusted*:
//!    nothing is filled and every read goes to the database; when it listens again the cache
//!    starts empty.
//! 3. **Every entry expires** after the TTL (5 s by default), a bound that holds even if a
//!    notification is lost on a connection that has not noticed it is dead.
//!
//! A fill never overwrites a newer invalidation: a reader takes a [`Ticket`] (the invalidation
//! counter) before it reads the database, and its result is only kept if the key it is about
//! (or its whole kind) was not forgotten meanwhile; other keys' churn (heartbeats) does not
//! hold it back.

mod listen;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use molecule_domain::WorkspaceId;
use parking_lot::Mutex;

use crate::workspaces::{Routing, Workspace};

pub(crate) use listen::listen;

/// The PostgreSQL notification channel of cache invalidations (sent by triggers).
pub const CACHE_CHANNEL: &str = "molecule_cache";

/// How long an entry is trusted without being read again, by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);

/// The invalidation count when a database read began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

#[derive(Debug)]
struct Entry<T> {
    value: T,
    at: Instant,
}

/// One kind of entry, with when each key (and the whole kind) was last forgotten.
#[derive(Debug)]
struct Kind<K, T> {
    entries: HashMap<K, Entry<T>>,
    /// The invalidation count at which each workspace's entries were last forgotten.
    forgotten: HashMap<WorkspaceId, u64>,
    /// The invalidation count at which every entry of this kind was last forgotten.
    all_forgotten: u64,
}

impl<K, T> Default for Kind<K, T> {
    fn default() -> Self {
        Kind {
            entries: HashMap::new(),
            forgotten: HashMap::new(),
            all_forgotten: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq, T> Kind<K, T> {
    /// Whether a read begun at `ticket` about `owner` is still current.
    fn current(&self, ticket: Ticket, owner: WorkspaceId) -> bool {
        self.all_forgotten <= ticket.0 && self.forgotten.get(&owner).is_none_or(|v| *v <= ticket.0)
    }

    fn forget_owner(&mut self, owner: WorkspaceId, at: u64, matches: impl Fn(&K, &T) -> bool) {
        self.entries.retain(|k, e| !matches(k, &e.value));
        self.forgotten.insert(owner, at);
    }

    fn forget_all(&mut self, at: u64) {
        self.entries.clear();
        self.forgotten.clear();
        self.all_forgotten = at;
    }
}

#[derive(Debug, Default)]
struct Maps {
    workspaces: Kind<WorkspaceId, Arc<Routing>>,
    tokens: Kind<Vec<u8>, WorkspaceId>,
    empty_queues: Kind<WorkspaceId, ()>,
}

/// The cache. One per [`crate::Store`], shared by its clones.
#[derive(Debug)]
pub(crate) struct Registry {
    maps: Mutex<Maps>,
    /// Bumped by every invalidation.
    version: AtomicU64,
    /// Whether entries may be filled and served (false while cross-replica notifications may
    /// be missed).
    trusted: AtomicBool,
    /// The TTL in milliseconds.
    ttl_ms: AtomicU64,
}

impl Registry {
    /// A cache that is trusted from the start (`true`: one process owns the database) or
    /// only once its listener listens (`false`).
    pub(crate) fn new(trusted: bool) -> Self {
        let registry = Registry {
            maps: Mutex::new(Maps::default()),
            version: AtomicU64::new(0),
            trusted: AtomicBool::new(trusted),
            ttl_ms: AtomicU64::new(0),
        };
        registry.set_ttl(DEFAULT_CACHE_TTL);
        registry
    }

    /// Sets how long an entry lives.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.ttl_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the cache serves and fills entries now.
    pub(crate) fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Trusts the cache again, empty (the listener listens).
    pub(crate) fn trust(&self) {
        self.forget_all();
        self.trusted.store(true, Ordering::Release);
    }

    /// Stops trusting the cache and empties it (notifications may be missed).
    pub(crate) fn distrust(&self) {
        self.trusted.store(false, Ordering::Release);
        self.forget_all();
    }

    /// A ticket for a fill, or `None` when the cache is untrusted.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        self.is_trusted()
            .then(|| Ticket(self.version.load(Ordering::Acquire)))
    }

    /// The next invalidation count (call with the maps locked).
    fn bump(&self) -> u64 {
        self.version.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn fresh<T: Clone>(&self, entry: Option<&Entry<T>>) -> Option<T> {
        let ttl = Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed));
        entry
            .filter(|e| e.at.elapsed() < ttl)
            .map(|e| e.value.clone())
    }

    /// The cached workspace, if fresh.
    pub(crate) fn workspace(&self, id: WorkspaceId) -> Option<Arc<Routing>> {
        if !self.is_trusted() {
            return None;
        }
        self.fresh(self.maps.lock().workspaces.entries.get(&id))
    }

    /// Keeps a workspace read from the database under `ticket`, unless it was forgotten
    /// since.
    pub(crate) fn fill_workspace(&self, ticket: Ticket, routing: Arc<Routing>) {
        let id = routing.workspace.id;
        let mut maps = self.maps.lock();
        if self.is_trusted() && maps.workspaces.current(ticket, id) {
            let entry = Entry {
                value: routing,
                at: Instant::now(),
            };
            maps.workspaces.entries.insert(id, entry);
        }
    }

    /// Changes a cached workspace in place (a heartbeat this process accepted); nothing when
    /// it is not cached. An in-flight fill of an older read of it is discarded.
    pub(crate) fn update_workspace(&self, id: WorkspaceId, change: impl FnOnce(&mut Workspace)) {
        let mut maps = self.maps.lock();
        let at = self.bump();
        if let Some(entry) = maps.workspaces.entries.get_mut(&id) {
            let mut routing = (*entry.value).clone();
            change(&mut routing.workspace);
            entry.value = Arc::new(routing);
        }
        maps.workspaces.forgotten.insert(id, at);
    }

    /// Forgets a workspace (its row changed) and its queue flag.
    pub(crate) fn forget_workspace(&self, id: WorkspaceId) {
        let mut maps = self.maps.lock();
        let at = self.bump();
        maps.workspaces.forget_owner(id, at, |k, _| *k == id);
        maps.empty_queues.forget_owner(id, at, |k, _| *k == id);
    }

    /// Forgets every workspace (a change to many rows at once).
    pub(crate) fn forget_workspaces(&self) {
        let mut maps = self.maps.lock();
        let at = self.bump();
        maps.workspaces.forget_all(at);
        maps.empty_queues.forget_all(at);
    }

    /// The workspace a token hash authenticates, if cached and fresh.
    pub(crate) fn token(&self, hash: &[u8]) -> Option<WorkspaceId> {
        if !self.is_trusted() {
            return None;
        }
        self.fresh(self.maps.lock().tokens.entries.get(hash))
    }

    /// Keeps a live token's workspace read under `ticket`, unless that workspace's tokens
    /// were forgotten since.
    pub(crate) fn fill_token(&self, ticket: Ticket, hash: Vec<u8>, workspace: WorkspaceId) {
        let mut maps = self.maps.lock();
        if self.is_trusted() && maps.tokens.current(ticket, workspace) {
            let entry = Entry {
                value: workspace,
                at: Instant::now(),
            };
            maps.tokens.entries.insert(hash, entry);
        }
    }

    /// Forgets every cached token of a workspace (one was revoked, or the workspace removed).
    pub(crate) fn forget_tokens_of(&self, id: WorkspaceId) {
        let mut maps = self.maps.lock();
        let at = self.bump();
        maps.tokens.forget_owner(id, at, |_, owner| *owner == id);
    }

    /// Whether the queue of `id` is known to be empty.
    pub(crate) fn queue_known_empty(&self, id: WorkspaceId) -> bool {
        self.is_trusted()
            && self
                .fresh(self.maps.lock().empty_queues.entries.get(&id))
                .is_some()
    }

    /// Records that the queue of `id` was read empty under `ticket`.
    pub(crate) fn fill_queue_empty(&self, ticket: Ticket, id: WorkspaceId) {
        let mut maps = self.maps.lock();
        if self.is_trusted() && maps.empty_queues.current(ticket, id) {
            let entry = Entry {
                value: (),
                at: Instant::now(),
            };
            maps.empty_queues.entries.insert(id, entry);
        }
    }

    /// A message may now wait in the queue of `id`.
    pub(crate) fn queue_not_empty(&self, id: WorkspaceId) {
        let mut maps = self.maps.lock();
        let at = self.bump();
        maps.empty_queues.forget_owner(id, at, |k, _| *k == id);
    }

    /// Forgets every queue flag (rows went back to `queued` without a known workspace).
    pub(crate) fn forget_queues(&self) {
        let mut maps = self.maps.lock();
        let at = self.bump();
        maps.empty_queues.forget_all(at);
    }

    /// Forgets everything.
    pub(crate) fn forget_all(&self) {
        let mut maps = self.maps.lock();
        let at = self.bump();
        maps.workspaces.forget_all(at);
        maps.tokens.forget_all(at);
        maps.empty_queues.forget_all(at);
    }

    /// Applies one notification of [`CACHE_CHANNEL`]: `w:<id>` (a workspace row), `t:<id>`
    /// (a token of the workspace), `q:<id>` (its queue); anything else forgets everything.
    pub(crate) fn apply_notice(&self, notice: &str) {
        let parsed = notice
            .split_once(':')
            .and_then(|(kind, id)| Some((kind, id.parse::<WorkspaceId>().ok()?)));
        match parsed {
            Some(("w", id)) => {
                self.forget_workspace(id);
                self.forget_tokens_of(id);
            }
            Some(("t", id)) => self.forget_tokens_of(id),
            Some(("q", id)) => self.queue_not_empty(id),
            _ => self.forget_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_begun_before_an_invalidation_of_its_key_is_dropped() {
        let registry = Registry::new(true);
        let id = WorkspaceId::new();
        let ticket = registry.ticket().unwrap();
        registry.forget_tokens_of(WorkspaceId::new());
        registry.fill_token(ticket, vec![2; 32], id);
        assert_eq!(
            registry.token(&[2; 32]),
            Some(id),
            "another key's churn is no reason"
        );
        let ticket = registry.ticket().unwrap();
        registry.forget_tokens_of(id);
        registry.fill_token(ticket, vec![1; 32], id);
        assert_eq!(registry.token(&[1; 32]), None);
        let ticket = registry.ticket().unwrap();
        registry.fill_token(ticket, vec![1; 32], id);
        assert_eq!(registry.token(&[1; 32]), Some(id));
        registry.apply_notice(&format!("t:{id}"));
        assert_eq!(registry.token(&[1; 32]), None);
    }

    #[test]
    fn an_untrusted_cache_neither_fills_nor_serves() {
        let registry = Registry::new(false);
        assert!(registry.ticket().is_none());
        registry.trust();
        let id = WorkspaceId::new();
        registry.fill_queue_empty(registry.ticket().unwrap(), id);
        assert!(registry.queue_known_empty(id));
        registry.distrust();
        assert!(!registry.queue_known_empty(id));
        registry.trust();
        assert!(
            !registry.queue_known_empty(id),
            "trusting again starts empty"
        );
    }

    #[test]
    fn entries_expire_and_unknown_notices_forget_everything() {
        let registry = Registry::new(true);
        let id = WorkspaceId::new();
        registry.fill_queue_empty(registry.ticket().unwrap(), id);
        registry.apply_notice("garbage");
        assert!(!registry.queue_known_empty(id));
        registry.set_ttl(Duration::ZERO);
        registry.fill_queue_empty(registry.ticket().unwrap(), id);
        assert!(!registry.queue_known_empty(id));
    }
}
