//! Operator operations: restart, pause, resume, hibernate, wake, remove; and the offline
//! handler the sweepers use.

use molecule_domain::{EventType, RelPath, Runtime, WorkspaceId, WorkspaceStatus};
use molecule_store::{StatusChange, StoreError, Workspace};
use serde_json::json;

use super::Lifecycle;

/// Why an operation was refused. Handlers turn each into the spec's status and message.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such workspace (or it is removed).
    #[error("workspace not found")]
    NotFound,
    /// An ancestor is paused.
    #[error("parent workspace \"{0}\" is paused — resume it first")]
    ParentPaused(String),
    /// No backend is configured.
    #[error("provisioner not available")]
    NoBackend,
    /// The workspace is not in a state the operation applies to (answered as not found, as
    /// the reference does).
    #[error("{0}")]
    WrongState(&'static str),
    /// The operation conflicts with the workspace's state.
    #[error("{0}")]
    Conflict(&'static str),
    /// The backend could not do its part; the workspace was left as it was.
    #[error("{0}")]
    BackendFailed(&'static str),
    /// Hibernation refused because tasks are running.
    #[error("workspace has active tasks; use ?force=true to terminate them")]
    ActiveTasks(i32),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a restart did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartOutcome {
    /// External workspaces are run by their operator: nothing to restart.
    External,
    /// The workspace is provisioning again.
    Restarting,
}

/// What a pause did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseOutcome {
    /// How many workspaces changed (the target included).
    pub count: usize,
}

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveOutcome {
    /// How many descendants were removed with the target.
    pub cascade_deleted: usize,
    /// Backend stops that failed (logged; the rows are removed regardless).
    pub stop_failures: usize,
}

/// How many levels an ancestor walk may go up.
const MAX_HOPS: usize = 32;

impl Lifecycle {
    /// The name of the nearest paused ancestor, if any (at most 32 levels up).
    pub async fn paused_ancestor(&self, id: WorkspaceId) -> Result<Option<String>, StoreError> {
        let workspaces = self.inner.store.workspaces();
        let mut next = workspaces.get(id).await?.and_then(|w| w.parent_id);
        for _ in 0..MAX_HOPS {
            let Some(parent_id) = next else {
                return Ok(None);
            };
            let Some(parent) = workspaces.get(parent_id).await? else {
                return Ok(None);
            };
            if parent.status == WorkspaceStatus::Paused {
                return Ok(Some(parent.name));
            }
            next = parent.parent_id;
        }
        Ok(None)
    }

    async fn live(&self, id: WorkspaceId) -> Result<Workspace, LifecycleError> {
        self.inner
            .store
            .workspaces()
            .get(id)
            .await?
            .filter(|w| !w.status.is_removed())
            .ok_or(LifecycleError::NotFound)
    }

    /// `POST /workspaces/:id/restart`: provisioning again, through the coalesced restart path.
    pub async fn restart(&self, id: WorkspaceId) -> Result<RestartOutcome, LifecycleError> {
        self.restart_with_files(id, Vec::new()).await
    }

    /// [`Lifecycle::restart`] with config files to write before the agent starts again (a
    /// template applied on restart).
    pub async fn restart_with_files(
        &self,
        id: WorkspaceId,
        files: Vec<(RelPath, Vec<u8>)>,
    ) -> Result<RestartOutcome, LifecycleError> {
        let lock = self.lock_of(id);
        let guard = lock.lock().await;
        let ws = self.live(id).await?;
        if let Some(name) = self.paused_ancestor(id).await? {
            return Err(LifecycleError::ParentPaused(name));
        }
        if ws.runtime == Runtime::EXTERNAL {
            return Ok(RestartOutcome::External);
        }
        if !self.has_backend() {
            return Err(LifecycleError::NoBackend);
        }
        if matches!(
            ws.status,
            WorkspaceStatus::Paused | WorkspaceStatus::Hibernating
        ) {
            return Err(LifecycleError::Conflict(
                "workspace is paused — resume it instead",
            ));
        }
        if ws.status != WorkspaceStatus::Provisioning {
            self.inner
                .store
                .workspaces()
                .transition_with(
                    id,
                    WorkspaceStatus::Provisioning,
                    None,
                    &StatusChange::clear_url(),
                )
                .await?;
            self.emit_provisioning(&ws).await;
        }
        drop(guard);
        self.request_restart_with_files(id, files);
        Ok(RestartOutcome::Restarting)
    }

    /// `POST /workspaces/:id/pause`: the workspace and every live, unpaused descendant stop
    /// and become `paused`.
    pub async fn pause(&self, id: WorkspaceId) -> Result<PauseOutcome, LifecycleError> {
        let root = self.live(id).await?;
        if root.status == WorkspaceStatus::Paused {
            return Err(LifecycleError::WrongState(
                "workspace not found or already paused",
            ));
        }
        let mut targets = vec![root];
        targets.extend(
            self.inner
                .store
                .workspaces()
                .descendants(id)
                .await?
                .into_iter()
                .filter(|w| w.status != WorkspaceStatus::Paused),
        );
        let mut count = 0;
        for ws in targets {
            let lock = self.lock_of(ws.id);
            let _guard = lock.lock().await;
            if let Some(backend) = &self.inner.backend
                && ws.runtime != Runtime::EXTERNAL
                && let Err(e) = backend.stop(ws.id, ws.instance_id.as_deref()).await
            {
                tracing::warn!(workspace = %ws.id, error = %e, "pause: stop failed");
            }
            match self
                .inner
                .store
                .workspaces()
                .transition_with(
                    ws.id,
                    WorkspaceStatus::Paused,
                    None,
                    &StatusChange::clear_url(),
                )
                .await
            {
                Ok(_) => {
                    count += 1;
                    self.inner
                        .events
                        .emit(
                            EventType::WorkspacePaused,
                            Some(ws.id),
                            json!({ "name": ws.name }),
                        )
                        .await;
                }
                Err(e) => tracing::warn!(workspace = %ws.id, error = %e, "pause: not paused"),
            }
        }
        Ok(PauseOutcome { count })
    }

    /// `POST /workspaces/:id/resume`: the workspace and its paused descendants start again
    /// (external ones go back to waiting for their agent).
    pub async fn resume(&self, id: WorkspaceId) -> Result<PauseOutcome, LifecycleError> {
        let root = self.live(id).await?;
        if root.status != WorkspaceStatus::Paused {
            return Err(LifecycleError::WrongState(
                "workspace not found or not paused",
            ));
        }
        if !self.has_backend() && root.runtime != Runtime::EXTERNAL {
            return Err(LifecycleError::NoBackend);
        }
        if let Some(name) = self.paused_ancestor(id).await? {
            return Err(LifecycleError::ParentPaused(name));
        }
        let mut targets = vec![root];
        targets.extend(
            self.inner
                .store
                .workspaces()
                .descendants(id)
                .await?
                .into_iter()
                .filter(|w| w.status == WorkspaceStatus::Paused),
        );
        let mut count = 0;
        for ws in targets {
            let lock = self.lock_of(ws.id);
            let guard = lock.lock().await;
            let to = if ws.runtime == Runtime::EXTERNAL {
                WorkspaceStatus::AwaitingAgent
            } else {
                WorkspaceStatus::Provisioning
            };
            if let Err(e) = self
                .inner
                .store
                .workspaces()
                .transition(ws.id, to, Some(&[WorkspaceStatus::Paused]))
                .await
            {
                tracing::warn!(workspace = %ws.id, error = %e, "resume: not resumed");
                continue;
            }
            count += 1;
            drop(guard);
            if to == WorkspaceStatus::Provisioning {
                self.emit_provisioning(&ws).await;
                self.spawn_provision(ws.id);
            } else {
                self.inner
                    .events
                    .emit(
                        EventType::WorkspaceAwaitingAgent,
                        Some(ws.id),
                        json!({ "name": ws.name, "external": true }),
                    )
                    .await;
            }
        }
        Ok(PauseOutcome { count })
    }

    /// `POST /workspaces/:id/hibernate`: stop an online or degraded workspace for idleness.
    /// With `force`, running tasks do not prevent it.
    pub async fn hibernate(&self, id: WorkspaceId, force: bool) -> Result<(), LifecycleError> {
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        let ws = self.live(id).await?;
        let hibernatable = [WorkspaceStatus::Online, WorkspaceStatus::Degraded];
        if !hibernatable.contains(&ws.status) {
            return Err(LifecycleError::WrongState(
                "workspace not found or not in a hibernatable state (must be online or degraded)",
            ));
        }
        if ws.active_tasks > 0 && !force {
            return Err(LifecycleError::ActiveTasks(ws.active_tasks));
        }
        let workspaces = self.inner.store.workspaces();
        let claim = workspaces
            .transition_with(
                id,
                WorkspaceStatus::Hibernating,
                Some(&hibernatable),
                &StatusChange::clear_url(),
            )
            .await?;
        if let Some(backend) = &self.inner.backend
            && ws.runtime != Runtime::EXTERNAL
            && let Err(e) = backend.stop(id, ws.instance_id.as_deref()).await
        {
            tracing::error!(workspace = %id, error = %e, "hibernate: stop failed; claim given back");
            workspaces
                .transition_with(
                    id,
                    claim.from,
                    Some(&[WorkspaceStatus::Hibernating]),
                    &StatusChange {
                        url: Some(ws.url.clone()),
                        last_sample_error: None,
                    },
                )
                .await?;
            return Err(LifecycleError::BackendFailed(
                "hibernation failed: the workspace could not be stopped",
            ));
        }
        workspaces
            .transition(
                id,
                WorkspaceStatus::Hibernated,
                Some(&[WorkspaceStatus::Hibernating]),
            )
            .await?;
        self.inner
            .events
            .emit(
                EventType::WorkspaceHibernated,
                Some(id),
                json!({ "name": ws.name, "tier": ws.tier }),
            )
            .await;
        Ok(())
    }

    /// Wakes a hibernated workspace: provisioning, then started. `false` if it was not
    /// hibernated.
    pub async fn wake(&self, id: WorkspaceId) -> Result<bool, LifecycleError> {
        let lock = self.lock_of(id);
        let guard = lock.lock().await;
        let ws = self.live(id).await?;
        match self
            .inner
            .store
            .workspaces()
            .transition(
                id,
                WorkspaceStatus::Provisioning,
                Some(&[WorkspaceStatus::Hibernated]),
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::UnexpectedStatus { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        drop(guard);
        self.emit_provisioning(&ws).await;
        self.spawn_provision(id);
        Ok(true)
    }

    /// Removes a workspace and its whole live subtree: rows become `removed` and their tokens
    /// are revoked first (one transaction), then each compute is stopped and
    /// `WORKSPACE_REMOVED` is broadcast (descendants first). With `purge` the rows are deleted.
    pub async fn remove(
        &self,
        id: WorkspaceId,
        purge: bool,
    ) -> Result<RemoveOutcome, LifecycleError> {
        let root = self.live(id).await?;
        let workspaces = self.inner.store.workspaces();
        let descendants = workspaces.descendants(id).await?;
        let mut all: Vec<Workspace> = descendants.clone();
        all.push(root.clone());
        let ids: Vec<WorkspaceId> = all.iter().map(|w| w.id).collect();
        workspaces.remove_all(&ids).await?;
        let mut stop_failures = 0;
        // Children before parents.
        for ws in all.iter().rev().skip(1).chain(std::iter::once(&root)) {
            let lock = self.lock_of(ws.id);
            let _guard = lock.lock().await;
            if let Some(backend) = &self.inner.backend
                && ws.runtime != Runtime::EXTERNAL
            {
                match backend.stop(ws.id, ws.instance_id.as_deref()).await {
                    // The storage goes only once the compute is gone (it is in use otherwise).
                    Ok(()) => {
                        if let Err(e) = backend.remove_volume(ws.id).await {
                            tracing::warn!(workspace = %ws.id, error = %e, "remove: volumes left behind");
                        }
                    }
                    Err(e) => {
                        stop_failures += 1;
                        tracing::error!(workspace = %ws.id, error = %e, "remove: stop failed (leak suspect)");
                    }
                }
            }
            let payload = if ws.id == id {
                json!({ "cascade_deleted": descendants.len() })
            } else {
                json!({})
            };
            self.inner
                .events
                .emit(EventType::WorkspaceRemoved, Some(ws.id), payload)
                .await;
        }
        for ws in &all {
            self.forget(ws.id);
        }
        if purge {
            workspaces.purge(&ids).await?;
        }
        Ok(RemoveOutcome {
            cascade_deleted: descendants.len(),
            stop_failures,
        })
    }

    /// A workspace lost its liveness: `offline` (external: `awaiting_agent`), broadcast, and
    /// for backend workspaces an automatic restart. Returns whether the status changed.
    pub async fn went_offline(&self, ws: &Workspace) -> Result<bool, StoreError> {
        let external = ws.runtime == Runtime::EXTERNAL;
        let to = if external {
            WorkspaceStatus::AwaitingAgent
        } else {
            WorkspaceStatus::Offline
        };
        let changed = match self
            .inner
            .store
            .workspaces()
            .transition_with(
                ws.id,
                to,
                Some(&[WorkspaceStatus::Online, WorkspaceStatus::Degraded]),
                &StatusChange::clear_url(),
            )
            .await
        {
            Ok(_) => true,
            Err(StoreError::UnexpectedStatus { .. } | StoreError::IllegalTransition(_)) => false,
            Err(e) => return Err(e),
        };
        if changed {
            self.inner
                .events
                .emit(EventType::WorkspaceOffline, Some(ws.id), json!({}))
                .await;
            if !external {
                self.request_restart(ws.id);
            }
        }
        Ok(changed)
    }

    pub(crate) async fn emit_provisioning(&self, ws: &Workspace) {
        self.inner
            .events
            .emit(
                EventType::WorkspaceProvisioning,
                Some(ws.id),
                json!({ "name": ws.name, "tier": ws.tier, "runtime": ws.runtime }),
            )
            .await;
    }
}
