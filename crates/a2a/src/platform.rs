//! What the proxy needs from the rest of the platform, passed in by the server.

use async_trait::async_trait;
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::Workspace;
use serde_json::Value;
use tokio::sync::mpsc;

/// The platform services the A2A layer calls but does not own: the event bus and the
/// lifecycle service. The server implements it; tests may implement it over their own parts.
#[async_trait]
pub trait Platform: Send + Sync + 'static {
    /// Emits an event about `workspace` (recorded or broadcast-only, as its type says).
    async fn emit(&self, event: EventType, workspace: WorkspaceId, payload: Value);

    /// Broadcasts an event of a type that is not recorded (`EventType::is_recorded` false)
    /// without waiting: to this process's subscribers at once, to other replicas after the
    /// next group commit.
    fn broadcast(&self, event: EventType, workspace: WorkspaceId, payload: Value);

    /// A signal for every event about `workspace` from now on; dropping the receiver stops it.
    /// The proxy's idle timer is reset by each one.
    fn watch(&self, workspace: WorkspaceId) -> mpsc::Receiver<()>;

    /// Whether the compute of `ws` is known to be gone. An unknown answer (a transient backend
    /// error), an external runtime or no backend at all is "not dead".
    async fn is_dead(&self, ws: &Workspace) -> bool;

    /// A dead workspace: marks it offline and restarts it through the lifecycle service.
    async fn declare_dead(&self, ws: &Workspace);

    /// Wakes a hibernated workspace (hibernated → provisioning → online).
    async fn wake(&self, workspace: WorkspaceId);

    /// Headers added to a delivery to an agent, read inside the delivery's span: the server's
    /// W3C trace context (`traceparent`, `tracestate`). None by default.
    fn outbound_headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
