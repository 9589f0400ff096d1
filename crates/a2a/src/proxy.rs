//! The façade of the crate: [`Proxy`], whose methods are the A2A proxy, the queue, the
//! delegations and plain fetches from agents, each handed to the module that does it.

use std::sync::Arc;

use molecule_domain::WorkspaceId;
use molecule_store::{Store, Workspace};
use time::OffsetDateTime;

use crate::fetch::{FetchError, Fetched};
use crate::platform::Platform;
use crate::queue::{DrainReport, SweepReport};
use crate::reply::Reply;
use crate::send::Message;
use crate::settings::Settings;
use crate::shared::Shared;
use crate::{delegation, drain, fetch, queue, send};

/// The A2A proxy, queue and delegations. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy over `store`, calling `platform` for events and the lifecycle. Its HTTP client
    /// follows no redirects, ignores proxy environment variables and connects only to
    /// addresses the policy allows.
    pub fn new(store: Store, platform: Arc<dyn Platform>, settings: Settings) -> Self {
        Proxy {
            inner: Arc::new(Shared::new(store, platform, settings)),
        }
    }

    /// The same proxy with other settings (a new HTTP client).
    pub fn with_settings(&self, settings: Settings) -> Self {
        Proxy::new(
            self.inner.store.clone(),
            Arc::clone(&self.inner.platform),
            settings,
        )
    }

    /// Records what a workspace declared in a heartbeat (capabilities, idle timeout),
    /// replacing what it declared before.
    pub fn set_overrides(&self, id: WorkspaceId, overrides: crate::Overrides) {
        self.inner.set_overrides(id, overrides);
    }

    /// Whether a workspace declared `capability` in its last heartbeat.
    pub fn has_capability(&self, id: WorkspaceId, capability: &str) -> bool {
        self.inner.has_capability(id, capability)
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Delivers one message, or queues it, and says what the caller gets back.
    pub async fn send(&self, msg: Message) -> Reply {
        send::send(&self.inner, msg).await
    }

    /// Starts a drain of `id`'s queue in the background, unless one is running here.
    pub fn spawn_drain(&self, id: WorkspaceId) {
        drain::spawn_drain(&self.inner, id);
    }

    /// Delivers queued messages of `id` one after the other while the target is live, has
    /// room and accepts them. One drain per workspace runs in this process at a time; across
    /// replicas the store never hands one row to two drains.
    pub async fn drain(&self, id: WorkspaceId) -> DrainReport {
        drain::drain(&self.inner, id).await
    }

    /// Drops expired messages, queues again the rows a crash left `dispatched` before
    /// `reclaim_before`, and drains every target with deliverable messages and room.
    pub async fn sweep(&self, reclaim_before: OffsetDateTime) -> SweepReport {
        drain::sweep(&self.inner, reclaim_before).await
    }

    /// `GET /workspaces/:id/a2a/queue/:queue_id` for a caller identified as `identity`: the
    /// row's sender or target only; anything else is 404.
    pub async fn queue_status(&self, identity: Option<WorkspaceId>, queue_id: &str) -> Reply {
        queue::status(&self.inner.store, identity, queue_id).await
    }

    /// `POST /admin/a2a-queue/drop-stale`: drops queued messages older than the age (at most
    /// [`queue::MAX_AGE_MINUTES`]).
    pub async fn drop_stale(
        &self,
        max_age_minutes: Option<&str>,
        workspace: Option<&str>,
    ) -> Reply {
        queue::drop_stale(&self.inner.store, max_age_minutes, workspace).await
    }

    /// `POST /workspaces/:id/delegate`: records the delegation, sends it in the background and
    /// answers 202 (200 for an idempotent replay).
    pub async fn delegate(&self, source: WorkspaceId, raw: &[u8]) -> Reply {
        delegation::delegate(&self.inner, source, raw).await
    }

    /// `POST /workspaces/:id/delegations/record`: an agent that delegated by itself records it.
    pub async fn record_delegation(&self, source: WorkspaceId, raw: &[u8]) -> Reply {
        delegation::record(&self.inner, source, raw).await
    }

    /// `POST /workspaces/:id/delegations/:delegation_id/update`: the agent reports the end.
    pub async fn update_delegation(&self, source: WorkspaceId, id: &str, raw: &[u8]) -> Reply {
        delegation::update(&self.inner, source, id, raw).await
    }

    /// `GET /workspaces/:id/delegations`: one entry per delegation among the newest rows,
    /// newest first; a finished row (completed, failed) wins over an earlier state.
    pub async fn list_delegations(&self, source: WorkspaceId) -> Reply {
        delegation::list(&self.inner, source).await
    }

    /// `GET <agent URL with path>?query` with the caller's `Authorization` forwarded when
    /// given, under the same address policy and vetted client as A2A delivery.
    pub async fn fetch_from_agent(
        &self,
        ws: &Workspace,
        path: &str,
        query: &[(&str, String)],
        authorization: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        fetch::from_agent(&self.inner, ws, path, query, authorization).await
    }

    /// Sends a streamed request to the agent of `ws` under the same address policy and vetted
    /// client as A2A delivery (chat uploads and downloads).
    pub async fn forward_to_agent(
        &self,
        ws: &Workspace,
        request: crate::forward::AgentRequest<'_>,
    ) -> Result<reqwest::Response, FetchError> {
        crate::forward::to_agent(&self.inner, ws, request).await
    }
}
