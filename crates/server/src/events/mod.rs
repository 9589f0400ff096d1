//! The event bus: every event is recorded in `structure_events` (when its type is persisted)
//! and fanned out to in-process subscribers (WebSocket clients, SSE streams, the A2A idle
//! timer).

use std::sync::Arc;

use molecule_domain::{EventType, WorkspaceId};
use molecule_store::Store;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it skips some.
const CAPACITY: usize = 1024;

/// The envelope every subscriber receives.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Envelope {
    /// The event type's wire name.
    pub event: String,
    /// The workspace the event is about (`""` when none).
    pub workspace_id: String,
    /// Server time at emission, RFC 3339 UTC.
    pub timestamp: String,
    /// Type-specific fields.
    pub payload: Value,
}

impl Envelope {
    /// The workspace the event is about, if any.
    pub fn workspace(&self) -> Option<WorkspaceId> {
        self.workspace_id.parse().ok()
    }
}

/// The bus. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    store: Store,
    tx: broadcast::Sender<Arc<Envelope>>,
}

impl EventBus {
    /// A bus that records into `store`.
    pub fn new(store: Store) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { store, tx }
    }

    /// Emits an event: persisted types are recorded first (if that fails, nothing is
    /// broadcast and the failure is logged); then every subscriber gets it. Never fails the
    /// caller.
    pub async fn emit(&self, event: EventType, workspace_id: Option<WorkspaceId>, payload: Value) {
        if event.is_recorded()
            && let Err(e) = self
                .store
                .events()
                .record(event.as_str(), workspace_id, &payload)
                .await
        {
            tracing::error!(event = event.as_str(), error = %e, "cannot record event");
            return;
        }
        self.publish(Envelope {
            event: event.as_str().to_owned(),
            workspace_id: workspace_id.map(|w| w.to_string()).unwrap_or_default(),
            timestamp: now_rfc3339(),
            payload,
        });
    }

    /// Hands an envelope to the local subscribers only.
    pub fn publish(&self, envelope: Envelope) {
        // No subscriber is not an error.
        let _ = self.tx.send(Arc::new(envelope));
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.tx.subscribe()
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}
