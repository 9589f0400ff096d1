//! The state every step of the proxy shares: the store, the platform, the vetted HTTP client,
//! the settings, and what this process keeps in memory (declared capabilities, running
//! drains, token usage on its way to the store).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{NewActivity, Store};
use parking_lot::Mutex;

use crate::log;
use crate::platform::Platform;
use crate::settings::Settings;
use crate::ssrf::vetted_client_builder;
use crate::usage::Recorder;

/// What a workspace's runtime declares in its heartbeats (`runtime_metadata`, lifecycle.md
/// §9.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The capabilities it declared on (`session`, `status_mgmt`, `scheduler`, …).
    pub capabilities: Vec<String>,
    /// How long a delivery to it may go without any event of it before it is cancelled
    /// (`idle_timeout_seconds` when positive).
    pub idle_timeout: Option<Duration>,
}

/// The proxy's state, behind the `Arc` of every [`crate::Proxy`] clone.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) client: reqwest::Client,
    /// With [`Settings::docker_network_urls`]: the client for agents reached by container
    /// name, whose resolver admits the private addresses of the Docker network.
    network_client: Option<reqwest::Client>,
    pub(crate) settings: Settings,
    /// What each workspace declared in its last heartbeat (in memory, as the reference keeps
    /// it; a restart forgets it until the next heartbeat).
    overrides: Mutex<HashMap<WorkspaceId, Overrides>>,
    /// Workspaces whose queue a task of this process is draining, each with "another drain
    /// was asked for meanwhile".
    pub(crate) draining: Mutex<HashMap<WorkspaceId, bool>>,
    /// Token usage from answers, on its way to the background writer.
    pub(crate) usage: Recorder,
}

impl Shared {
    /// The state over `store` and `platform`. Its HTTP client follows no redirects, ignores
    /// proxy environment variables and connects only to addresses the policy allows.
    pub(crate) fn new(store: Store, platform: Arc<dyn Platform>, settings: Settings) -> Self {
        let client = agent_client(settings.policy, &settings);
        let network_client = settings.docker_network_urls.then(|| {
            let policy = crate::ssrf::UrlPolicy {
                saas: true,
                ..settings.policy
            };
            agent_client(policy, &settings)
        });
        let hook_platform = Arc::clone(&platform);
        store.on_activity_stored(Arc::new(move |row| {
            hook_platform.broadcast(
                EventType::ActivityLogged,
                row.workspace_id,
                log::logged_payload(row),
            );
        }));
        Shared {
            store,
            platform,
            client,
            network_client,
            settings,
            overrides: Mutex::new(HashMap::new()),
            draining: Mutex::new(HashMap::new()),
            usage: Recorder::new(),
        }
    }

    /// The client for a target under `policy` (from [`Settings::target`]): the Docker network
    /// one when the target was rewritten to its container name, else the usual one.
    pub(crate) fn client_for(&self, policy: &crate::ssrf::UrlPolicy) -> &reqwest::Client {
        match &self.network_client {
            Some(network) if policy.saas && !self.settings.policy.saas => network,
            _ => &self.client,
        }
    }

    /// Records what a workspace declared in a heartbeat, replacing what it declared before
    /// (nothing: forgets it).
    pub(crate) fn set_overrides(&self, id: WorkspaceId, overrides: Overrides) {
        let mut all = self.overrides.lock();
        if overrides.capabilities.is_empty() && overrides.idle_timeout.is_none() {
            all.remove(&id);
        } else {
            all.insert(id, overrides);
        }
    }

    /// Whether a workspace declared `capability` in its last heartbeat.
    pub(crate) fn has_capability(&self, id: WorkspaceId, capability: &str) -> bool {
        self.overrides
            .lock()
            .get(&id)
            .is_some_and(|o| o.capabilities.iter().any(|x| x == capability))
    }

    /// The idle timeout of a delivery to `id`: the one its last heartbeat declared, else the
    /// setting.
    pub(crate) fn idle_timeout_for(&self, id: WorkspaceId) -> Duration {
        self.overrides
            .lock()
            .get(&id)
            .and_then(|o| o.idle_timeout)
            .unwrap_or(self.settings.idle_timeout)
    }

    /// Queues an activity row for the group-commit writer; its `ACTIVITY_LOGGED` broadcast
    /// follows its commit (the hook [`Shared::new`] installs).
    pub(crate) async fn record_quietly(&self, row: NewActivity) {
        self.store
            .activity()
            .record_later(log::strip_empty_trace(row))
            .await;
    }
}

/// A client for agents under `policy`: vetted addresses only, the configured connect timeout.
fn agent_client(policy: crate::ssrf::UrlPolicy, settings: &Settings) -> reqwest::Client {
    vetted_client_builder(policy)
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| {
            // Only a TLS or resolver set-up failure can get here; every URL is still
            // checked against the policy before sending.
            tracing::error!(error = %e, "a2a: HTTP client set-up failed; using the default");
            reqwest::Client::new()
        })
}
