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
//! counter) before it reads the database and its result is only kept if nothing was forgotten
//! meanwhile.

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

#[derive(Debug, Default)]
struct Maps {
    workspaces: HashMap<WorkspaceId, Entry<Arc<Routing>>>,
    tokens: HashMap<Vec<u8>, Entry<WorkspaceId>>,
    empty_queues: HashMap<WorkspaceId, Entry<()>>,
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
    ttl: Mutex<Duration>,
}

impl Registry {
    /// A cache that is trusted from the start (`true`: one process owns the database) or
    /// only once its listener listens (`false`).
    pub(crate) fn new(trusted: bool) -> Self {
        Registry {
            maps: Mutex::new(Maps::default()),
            version: AtomicU64::new(0),
            trusted: AtomicBool::new(trusted),
            ttl: Mutex::new(DEFAULT_CACHE_TTL),
        }
    }

    /// Sets how long an entry lives.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        *self.ttl.lock() = ttl;
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

    fn fresh<T: Clone>(&self, entry: Option<&Entry<T>>) -> Option<T> {
        let ttl = *self.ttl.lock();
        entry
            .filter(|e| e.at.elapsed() < ttl)
            .map(|e| e.value.clone())
    }

    /// Runs `fill` on the maps if nothing was forgotten since `ticket` (the caller's result
    /// is current).
    fn fill_with(&self, ticket: Ticket, fill: impl FnOnce(&mut Maps)) {
        let mut maps = self.maps.lock();
        if self.is_trusted() && self.version.load(Ordering::Acquire) == ticket.0 {
            fill(&mut maps);
        }
    }

    /// Forgets under the lock and bumps the invalidation count.
    fn forget_with(&self, forget: impl FnOnce(&mut Maps)) {
        let mut maps = self.maps.lock();
        forget(&mut maps);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The cached workspace, if fresh.
    pub(crate) fn workspace(&self, id: WorkspaceId) -> Option<Arc<Routing>> {
        if !self.is_trusted() {
            return None;
        }
        self.fresh(self.maps.lock().workspaces.get(&id))
    }

    /// Keeps a workspace read from the database under `ticket`.
    pub(crate) fn fill_workspace(&self, ticket: Ticket, routing: Arc<Routing>) {
        self.fill_with(ticket, |maps| {
            let id = routing.workspace.id;
            let entry = Entry {
                value: routing,
                at: Instant::now(),
            };
            maps.workspaces.insert(id, entry);
        });
    }

    /// Changes a cached workspace in place (a heartbeat this process accepted); nothing when
    /// it is not cached. In-flight fills of older reads are discarded.
    pub(crate) fn update_workspace(&self, id: WorkspaceId, change: impl FnOnce(&mut Workspace)) {
        let mut maps = self.maps.lock();
        if let Some(entry) = maps.workspaces.get_mut(&id) {
            let mut routing = (*entry.value).clone();
            change(&mut routing.workspace);
            entry.value = Arc::new(routing);
        }
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets a workspace (its row changed) and its queue flag.
    pub(crate) fn forget_workspace(&self, id: WorkspaceId) {
        self.forget_with(|maps| {
            maps.workspaces.remove(&id);
            maps.empty_queues.remove(&id);
        });
    }

    /// Forgets every workspace (a change to many rows at once).
    pub(crate) fn forget_workspaces(&self) {
        self.forget_with(|maps| {
            maps.workspaces.clear();
            maps.empty_queues.clear();
        });
    }

    /// The workspace a token hash authenticates, if cached and fresh.
    pub(crate) fn token(&self, hash: &[u8]) -> Option<WorkspaceId> {
        if !self.is_trusted() {
            return None;
        }
        self.fresh(self.maps.lock().tokens.get(hash))
    }

    /// Keeps a live token's workspace read under `ticket`.
    pub(crate) fn fill_token(&self, ticket: Ticket, hash: Vec<u8>, workspace: WorkspaceId) {
        self.fill_with(ticket, |maps| {
            let entry = Entry {
                value: workspace,
                at: Instant::now(),
            };
            maps.tokens.insert(hash, entry);
        });
    }

    /// Forgets every cached token of a workspace (one was revoked, or the workspace removed).
    pub(crate) fn forget_tokens_of(&self, id: WorkspaceId) {
        self.forget_with(|maps| maps.tokens.retain(|_, e| e.value != id));
    }

    /// Whether the queue of `id` is known to be empty.
    pub(crate) fn queue_known_empty(&self, id: WorkspaceId) -> bool {
        self.is_trusted() && self.fresh(self.maps.lock().empty_queues.get(&id)).is_some()
    }

    /// Records that the queue of `id` was read empty under `ticket`.
    pub(crate) fn fill_queue_empty(&self, ticket: Ticket, id: WorkspaceId) {
        self.fill_with(ticket, |maps| {
            let entry = Entry {
                value: (),
                at: Instant::now(),
            };
            maps.empty_queues.insert(id, entry);
        });
    }

    /// A message may now wait in the queue of `id`.
    pub(crate) fn queue_not_empty(&self, id: WorkspaceId) {
        self.forget_with(|maps| {
            maps.empty_queues.remove(&id);
        });
    }

    /// Forgets every queue flag (rows went back to `queued` without a known workspace).
    pub(crate) fn forget_queues(&self) {
        self.forget_with(|maps| maps.empty_queues.clear());
    }

    /// Forgets everything.
    pub(crate) fn forget_all(&self) {
        self.forget_with(|maps| *maps = Maps::default());
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
    fn a_fill_begun_before_an_invalidation_is_dropped() {
        let registry = Registry::new(true);
        let id = WorkspaceId::new();
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
