//! The sweeps that watch workspaces. Each is one pass, run periodically by a supervised loop.

use molecule_domain::{Runtime, WorkspaceStatus};
use molecule_provisioner_api::Running;
use molecule_store::{StoreError, Workspace};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::Lifecycle;

impl Lifecycle {
    /// Liveness: online or degraded workspaces with no heartbeat for `ttl` go offline
    /// (external ones: awaiting_agent), and backend ones are restarted. Returns how many.
    pub async fn sweep_liveness(&self, ttl: Duration) -> Result<usize, StoreError> {
        let cutoff = OffsetDateTime::now_utc() - ttl;
        let silent = self
            .inner
            .store
            .workspaces()
            .silent_since(
                &[WorkspaceStatus::Online, WorkspaceStatus::Degraded],
                cutoff,
            )
            .await?;
        let mut changed = 0;
        for ws in silent {
            if self.went_offline(&ws).await? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Whether the compute of `ws` is known to be gone: only a definite "not running" from
    /// the backend. External workspaces, no backend and an unknown answer are "not dead".
    pub async fn is_dead(&self, ws: &Workspace) -> bool {
        let Some(backend) = &self.inner.backend else {
            return false;
        };
        if ws.runtime == Runtime::EXTERNAL {
            return false;
        }
        matches!(
            backend.running(ws.id, ws.instance_id.as_deref()).await,
            Running::No
        )
    }

    /// Health: for online or degraded backend workspaces, ask the backend whether the compute
    /// runs. Only a definite "no" marks a workspace offline (and restarts it); an unknown
    /// answer changes nothing. Returns how many went offline.
    pub async fn sweep_health(&self) -> Result<usize, StoreError> {
        let Some(backend) = self.inner.backend.clone() else {
            return Ok(0);
        };
        let live = self
            .inner
            .store
            .workspaces()
            .with_status(&[WorkspaceStatus::Online, WorkspaceStatus::Degraded])
            .await?;
        let mut changed = 0;
        for ws in live.into_iter().filter(|w| w.runtime != Runtime::EXTERNAL) {
            match backend.running(ws.id, ws.instance_id.as_deref()).await {
                Running::Yes => {}
                Running::Unknown(reason) => {
                    tracing::debug!(workspace = %ws.id, %reason, "health: running state unknown");
                }
                Running::No => {
                    if self.went_offline(&ws).await? {
                        changed += 1;
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Provision timeout: workspaces provisioning for longer than `timeout` fail.
    pub async fn sweep_provision_timeouts(&self, timeout: Duration) -> Result<usize, StoreError> {
        let cutoff = OffsetDateTime::now_utc() - timeout;
        let stuck = self
            .inner
            .store
            .workspaces()
            .silent_since(&[WorkspaceStatus::Provisioning], cutoff)
            .await?;
        let mut failed = 0;
        for ws in stuck {
            if ws.updated_at >= cutoff {
                continue; // a heartbeat-less row that was touched recently
            }
            let secs = timeout.whole_seconds();
            let reason =
                format!("provisioning timed out after {secs}s: the agent never registered");
            self.mark_failed(
                ws.id,
                &reason,
                json!({
                    "error": reason,
                    "timeout_secs": secs,
                    "runtime": ws.runtime,
                    "source": "provision_timeout_sweep",
                }),
            )
            .await;
            failed += 1;
        }
        Ok(failed)
    }
}

impl Lifecycle {
    /// Hibernation: online workspaces with hibernation enabled that did no work for their
    /// idle minutes are hibernated. Returns how many.
    pub async fn sweep_hibernation(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let idle = self
            .inner
            .store
            .workspaces()
            .idle_for_hibernation(now)
            .await?;
        let mut done = 0;
        for ws in idle {
            match self.hibernate(ws.id, false).await {
                Ok(()) => done += 1,
                Err(e) => tracing::info!(workspace = %ws.id, error = %e, "not hibernated"),
            }
        }
        Ok(done)
    }
}

impl Lifecycle {
    /// Orphans: compute the backend manages for a workspace that is removed or unknown (e.g.
    /// left behind by a crashed server) is stopped and its volumes removed. Returns how many.
    pub async fn sweep_orphans(&self) -> Result<usize, StoreError> {
        let Some(backend) = self.inner.backend.clone() else {
            return Ok(0);
        };
        let managed = match backend.managed_workspaces().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "orphan sweep: cannot list managed compute");
                return Ok(0);
            }
        };
        let mut removed = 0;
        for id in managed {
            let live = self
                .inner
                .store
                .workspaces()
                .get(id)
                .await?
                .is_some_and(|w| !w.status.is_removed());
            if live {
                continue;
            }
            let lock = self.lock_of(id);
            let _guard = lock.lock().await;
            match backend.stop(id, None).await {
                Ok(()) => {
                    if let Err(e) = backend.remove_volume(id).await {
                        tracing::warn!(workspace = %id, error = %e, "orphan sweep: volume not removed");
                    }
                    tracing::info!(workspace = %id, "orphan sweep: removed compute of a workspace that no longer exists");
                    removed += 1;
                }
                Err(e) => tracing::warn!(workspace = %id, error = %e, "orphan sweep: stop failed"),
            }
        }
        Ok(removed)
    }

    /// The console output of a workspace's compute: `None` when this deployment has none
    /// (no backend, an external workspace, or a backend without console access).
    pub async fn console(
        &self,
        id: molecule_domain::WorkspaceId,
    ) -> Result<Option<String>, super::LifecycleError> {
        let ws = self
            .inner
            .store
            .workspaces()
            .get(id)
            .await?
            .filter(|w| !w.status.is_removed())
            .ok_or(super::LifecycleError::NotFound)?;
        let Some(backend) = &self.inner.backend else {
            return Ok(None);
        };
        if ws.runtime == Runtime::EXTERNAL {
            return Ok(None);
        }
        match backend.console_output(id, ws.instance_id.as_deref()).await {
            Ok(text) => Ok(Some(text)),
            Err(molecule_provisioner_api::ProvisionError::Unsupported(_)) => Ok(None),
            Err(e) => {
                tracing::warn!(workspace = %id, error = %e, "console output failed");
                Err(super::LifecycleError::BackendFailed(
                    "the backend returned an error fetching console output",
                ))
            }
        }
    }
}

/// How often the orphan sweeper runs.
pub const ORPHANS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// How often the hibernation monitor runs.
pub const HIBERNATION_EVERY: std::time::Duration = std::time::Duration::from_secs(120);
/// How often the liveness sweep runs.
pub const LIVENESS_EVERY: std::time::Duration = std::time::Duration::from_secs(15);
/// How often the health sweep asks the backend.
pub const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(15);
/// How often the A2A queue sweep (expire, reclaim, drain) runs.
pub const QUEUE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);
/// How often the provision-timeout sweep runs.
pub const PROVISION_TIMEOUT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
