//! The server's side of the A2A layer: the [`Platform`] the proxy calls (event bus and
//! lifecycle service).

use async_trait::async_trait;
use molecule_a2a::Platform;
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::Workspace;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::events::EventBus;
use crate::lifecycle::Lifecycle;

/// The event bus and lifecycle service, as the proxy sees them.
#[derive(Debug, Clone)]
pub struct ServerPlatform {
    /// Where the proxy's events (A2A traffic, activity) are emitted.
    pub events: EventBus,
    /// What the proxy asks to restart or wake a workspace.
    pub lifecycle: Lifecycle,
}

#[async_trait]
impl Platform for ServerPlatform {
    async fn emit(&self, event: EventType, workspace: WorkspaceId, payload: Value) {
        self.events.emit(event, Some(workspace), payload).await;
    }

    fn broadcast(&self, event: EventType, workspace: WorkspaceId, payload: Value) {
        self.events.broadcast(event, Some(workspace), payload);
    }

    fn watch(&self, workspace: WorkspaceId) -> mpsc::Receiver<()> {
        self.events.watch(workspace)
    }

    async fn is_dead(&self, ws: &Workspace) -> bool {
        self.lifecycle.is_dead(ws).await
    }

    async fn declare_dead(&self, ws: &Workspace) {
        if let Err(e) = self.lifecycle.went_offline(ws).await {
            tracing::error!(workspace = %ws.id, error = %e, "a2a: cannot mark a dead workspace offline");
        }
    }

    async fn wake(&self, workspace: WorkspaceId) {
        if let Err(e) = self.lifecycle.wake(workspace).await {
            tracing::warn!(workspace = %workspace, error = %e, "a2a: cannot wake a workspace");
        }
    }

    fn outbound_headers(&self) -> Vec<(String, String)> {
        crate::telemetry::outbound_headers()
    }
}
