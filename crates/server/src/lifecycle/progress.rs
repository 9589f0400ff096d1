//! Provisioning progress as events: each step a backend reports (image, volume, container),
//! and the agent's registration, becomes a recorded `WORKSPACE_PROVISION_PROGRESS` event with
//! the payload `{"step": …, "status": …}` (`started`, `done`, `failed`), in order, on `/ws`,
//! SSE and `GET /events/:id`.

use molecule_domain::{EventType, WorkspaceId};
use molecule_provisioner_api::progress::Progress;
pub(crate) use molecule_provisioner_api::progress::{Step, StepStatus};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::events::EventBus;

/// The payload of a progress event.
pub(crate) fn payload(step: Step, status: StepStatus) -> Value {
    json!({ "step": step.as_str(), "status": status.as_str() })
}

/// Emits a progress event and waits until it is recorded and broadcast.
pub(crate) async fn emit(events: &EventBus, id: WorkspaceId, step: Step, status: StepStatus) {
    events
        .emit(
            EventType::WorkspaceProvisionProgress,
            Some(id),
            payload(step, status),
        )
        .await;
}

/// The [`Progress`] handed to a backend's start: reports go, in order, through a channel to
/// one task that emits them (a report must not block the backend).
pub(crate) struct EventProgress {
    reports: mpsc::UnboundedSender<(Step, StepStatus)>,
    emitter: tokio::task::JoinHandle<()>,
}

impl EventProgress {
    /// Starts the emitter of workspace `id`'s progress.
    pub(crate) fn start(events: EventBus, id: WorkspaceId) -> Self {
        let (reports, mut rx) = mpsc::unbounded_channel::<(Step, StepStatus)>();
        let emitter = tokio::spawn(async move {
            while let Some((step, status)) = rx.recv().await {
                emit(&events, id, step, status).await;
            }
        });
        Self { reports, emitter }
    }

    /// Waits until every report so far is emitted.
    pub(crate) async fn finish(self) {
        drop(self.reports);
        if let Err(e) = self.emitter.await {
            tracing::warn!(error = %e, "provision progress: the emitter ended abnormally");
        }
    }
}

impl Progress for EventProgress {
    fn report(&self, step: Step, status: StepStatus) {
        // An event of the `workspace.provision` span (a span event in traces).
        tracing::info!(
            step = step.as_str(),
            status = status.as_str(),
            "provision step"
        );
        // The receiver lives until `finish`: a send cannot fail before.
        let _ = self.reports.send((step, status));
    }
}
