//! The lifecycle service: the only caller of the [`Provisioner`] backend.
//!
//! Every start, stop and restart of a workspace goes through here: the HTTP handlers, the
//! sweepers and team operations call these methods and never see a backend. Operations on
//! one workspace are serialised by a per-workspace lock; status changes go through the
//! store's guarded transition; provision requests are built from the whole row.

mod access;
mod images;
mod operations;
pub(crate) mod progress;
mod provision;
mod restart;
pub mod sweeps;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use molecule_domain::WorkspaceId;
use molecule_provisioner_api::Provisioner;
use molecule_store::Store;

use crate::events::EventBus;

pub use access::{AccessError, ContainerState};
pub use operations::{LifecycleError, RestartOutcome};

/// Why provisioning fails when no backend is configured (stored and broadcast as is).
pub const NO_BACKEND: &str = "no provisioning backend available — workspace requires either a \
     Docker daemon (self-hosted) or an EC2 backend";

/// The lifecycle service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    events: EventBus,
    backend: Option<Arc<dyn Provisioner>>,
    platform_url: String,
    locks: Mutex<HashMap<WorkspaceId, Arc<tokio::sync::Mutex<()>>>>,
    restarts: Mutex<HashMap<WorkspaceId, restart::State>>,
    /// Workspaces whose backend start is under way.
    starting: Mutex<std::collections::HashSet<WorkspaceId>>,
    /// How long a bootstrap token stays valid: the provision timeout, in seconds.
    bootstrap_ttl_secs: std::sync::atomic::AtomicU64,
}

/// The bootstrap-token lifetime until [`Lifecycle::set_provision_timeout`] is called: the
/// default provision timeout.
const DEFAULT_BOOTSTRAP_TTL_SECS: u64 = 600;

impl Lifecycle {
    /// A service over this store and bus, with `backend` (or none: every provision fails
    /// with [`NO_BACKEND`]).
    pub fn new(
        store: Store,
        events: EventBus,
        backend: Option<Arc<dyn Provisioner>>,
        platform_url: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                backend,
                platform_url,
                locks: Mutex::new(HashMap::new()),
                restarts: Mutex::new(HashMap::new()),
                starting: Mutex::new(std::collections::HashSet::new()),
                bootstrap_ttl_secs: std::sync::atomic::AtomicU64::new(DEFAULT_BOOTSTRAP_TTL_SECS),
            }),
        }
    }

    /// Sets the provision timeout, which bounds the life of a bootstrap token.
    pub fn set_provision_timeout(&self, timeout: std::time::Duration) {
        self.inner.bootstrap_ttl_secs.store(
            timeout.as_secs().max(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// How long a bootstrap token issued now stays valid.
    fn bootstrap_ttl(&self) -> time::Duration {
        let secs = self
            .inner
            .bootstrap_ttl_secs
            .load(std::sync::atomic::Ordering::Relaxed);
        time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// The URL workspaces reach the platform at (`PLATFORM_URL`).
    pub fn platform_url(&self) -> &str {
        &self.inner.platform_url
    }

    /// Whether a backend is configured.
    pub fn has_backend(&self) -> bool {
        self.inner.backend.is_some()
    }

    /// Whether the backend is starting `id` now and will publish its agent URL when the start
    /// returns (an agent may register before that).
    pub fn publishing_url_of(&self, id: WorkspaceId) -> bool {
        self.inner
            .backend
            .as_ref()
            .is_some_and(|b| b.publishes_agent_url())
            && self.inner.starting.lock().contains(&id)
    }

    /// Waits (at most `limit`) until no lifecycle operation holds `id` (e.g. a start that will
    /// publish its URL); `false` if the wait timed out.
    pub async fn settled(&self, id: WorkspaceId, limit: std::time::Duration) -> bool {
        let lock = self.lock_of(id);
        tokio::time::timeout(limit, lock.lock()).await.is_ok()
    }

    /// Marks `id` as being started for as long as the guard lives.
    fn starting(&self, id: WorkspaceId) -> Starting<'_> {
        self.inner.starting.lock().insert(id);
        Starting {
            lifecycle: self,
            id,
        }
    }

    /// The lock that serialises operations on one workspace.
    fn lock_of(&self, id: WorkspaceId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock();
        locks.entry(id).or_default().clone()
    }

    /// Forgets the per-workspace state of a removed workspace.
    fn forget(&self, id: WorkspaceId) {
        let mut locks = self.inner.locks.lock();
        locks.remove(&id);
        drop(locks);
        let mut restarts = self.inner.restarts.lock();
        restarts.remove(&id);
    }
}

/// A backend start under way (see [`Lifecycle::publishing_url_of`]).
struct Starting<'a> {
    lifecycle: &'a Lifecycle,
    id: WorkspaceId,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.lifecycle.inner.starting.lock().remove(&self.id);
    }
}
