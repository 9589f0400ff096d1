//! Restarts, coalesced per workspace: requests that arrive while a cycle is queued merge into
//! it; requests that arrive while one runs cause exactly one follow-up cycle.

use molecule_domain::{EventType, RelPath, WorkspaceId, WorkspaceStatus};
use molecule_store::StatusChange;
use serde_json::json;

use super::Lifecycle;

/// Restart bookkeeping of one workspace.
#[derive(Debug, Default)]
pub(crate) struct State {
    running: bool,
    pending: bool,
    /// Config files the next cycle writes (a template applied on restart); the latest
    /// request with files wins.
    files: Vec<(RelPath, Vec<u8>)>,
}

impl Lifecycle {
    /// Asks for a restart of a workspace. Returns the handle of the task that will run the
    /// cycle(s), or `None` when the request was merged into a cycle already under way.
    pub fn request_restart(&self, id: WorkspaceId) -> Option<tokio::task::JoinHandle<()>> {
        self.request_restart_with_files(id, Vec::new())
    }

    /// [`Lifecycle::request_restart`] that also writes `files` into the config root (a
    /// template applied on restart); without files the config storage keeps what it has.
    pub fn request_restart_with_files(
        &self,
        id: WorkspaceId,
        files: Vec<(RelPath, Vec<u8>)>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        {
            let mut restarts = self.inner.restarts.lock();
            let state = restarts.entry(id).or_default();
            state.pending = true;
            if !files.is_empty() {
                state.files = files;
            }
            if state.running {
                return None;
            }
            state.running = true;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            loop {
                let go = {
                    let mut restarts = this.inner.restarts.lock();
                    let state = restarts.entry(id).or_default();
                    if state.pending {
                        state.pending = false;
                        Some(std::mem::take(&mut state.files))
                    } else {
                        state.running = false;
                        None
                    }
                };
                let Some(files) = go else {
                    break;
                };
                this.restart_cycle(id, files).await;
            }
        }))
    }

    /// One restart: skipped for removed, paused, hibernated and external workspaces and for
    /// those under a paused ancestor; else provisioning, stop the old compute, provision.
    async fn restart_cycle(&self, id: WorkspaceId, files: Vec<(RelPath, Vec<u8>)>) {
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        let store = &self.inner.store;
        let ws = match store.workspaces().get(id).await {
            Ok(Some(ws)) => ws,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(workspace = %id, error = %e, "restart: cannot read the workspace");
                return;
            }
        };
        use WorkspaceStatus::*;
        if matches!(ws.status, Removed | Paused | Hibernated | Hibernating)
            || ws.runtime == molecule_domain::Runtime::EXTERNAL
        {
            return;
        }
        match self.paused_ancestor(id).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                tracing::error!(workspace = %id, error = %e, "restart: cannot read ancestors");
                return;
            }
        }
        if ws.status != Provisioning {
            if let Err(e) = store
                .workspaces()
                .transition_with(id, Provisioning, None, &StatusChange::clear_url())
                .await
            {
                tracing::warn!(workspace = %id, error = %e, "restart: not restarted");
                return;
            }
            self.inner
                .events
                .emit(
                    EventType::WorkspaceProvisioning,
                    Some(id),
                    json!({ "name": ws.name, "tier": ws.tier, "runtime": ws.runtime }),
                )
                .await;
        }
        if let Some(backend) = &self.inner.backend
            && let Err(e) = backend.stop(id, ws.instance_id.as_deref()).await
        {
            tracing::warn!(workspace = %id, error = %e, "restart: stopping the old compute failed");
        }
        self.provision_locked(id, files).await;
    }
}
