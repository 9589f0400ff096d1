//! The event bus: every event is recorded in `structure_events` (when its type is persisted)
//! and fanned out to in-process subscribers (WebSocket clients, SSE streams, the A2A idle
//! timer).
//!
//! On PostgreSQL, replicas share their events through `LISTEN`/`NOTIFY` on
//! [`NOTIFY_CHANNEL`] (Decision 4): [`EventBus::emit`] also notifies, and the task started by
//! [`EventBus::start_listener`] hands other replicas' events to the local subscribers. Each
//! notification carries the emitting bus's origin id, so a bus ignores its own.

mod replicas;

use std::collections::HashMap;
use std::sync::Arc;

use molecule_domain::{EventType, WorkspaceId};
use molecule_store::Store;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{broadcast, mpsc, watch};

pub use replicas::{ListenerHandle, ListenerState, NOTIFY_CHANNEL};

/// How many events a slow subscriber may fall behind before it skips some.
const CAPACITY: usize = 1024;

/// The buffer of a per-workspace subscription; when full, events are dropped for it.
pub const WORKSPACE_BUFFER: usize = 64;

/// The envelope every subscriber receives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

    /// The emission time in Unix milliseconds (now, if the timestamp does not parse).
    pub fn unix_millis(&self) -> i64 {
        let at = OffsetDateTime::parse(&self.timestamp, &Rfc3339)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }
}

/// The bus. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    store: Store,
    tx: broadcast::Sender<Arc<Envelope>>,
    /// Tags this bus's notifications, so that its own listener skips them.
    origin: Arc<str>,
    /// Turns `true` when long-lived clients (WebSockets) should close.
    closing: Arc<watch::Sender<bool>>,
    /// Signals for [`EventBus::watch`], by workspace.
    watchers: Arc<Mutex<HashMap<WorkspaceId, Vec<mpsc::Sender<()>>>>>,
    /// Where a schedule's answer is posted (the channel manager's Slack broadcast).
    cron_output: Arc<Mutex<CronOutputSlot>>,
}

/// Takes a schedule's non-empty answer for a workspace (spec: scheduler-channels-mcp §6.5).
pub type CronOutput = Arc<dyn Fn(WorkspaceId, String) + Send + Sync>;

/// The registered [`CronOutput`], if any.
#[derive(Default)]
struct CronOutputSlot(Option<CronOutput>);

impl std::fmt::Debug for CronOutputSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "CronOutput(set)"
        } else {
            "CronOutput(none)"
        })
    }
}

impl EventBus {
    /// A bus that records into `store`.
    pub fn new(store: Store) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        let (closing, _) = watch::channel(false);
        Self {
            store,
            tx,
            origin: WorkspaceId::new().to_string().into(),
            closing: Arc::new(closing),
            watchers: Arc::default(),
            cron_output: Arc::default(),
        }
    }

    /// Registers where schedules' answers go (the last registration wins).
    pub fn set_cron_output(&self, output: CronOutput) {
        self.cron_output.lock().0 = Some(output);
    }

    /// Hands a schedule's non-empty answer to the registered [`CronOutput`], if any.
    pub fn post_cron_output(&self, workspace: WorkspaceId, text: String) {
        let output = self.cron_output.lock().0.clone();
        if let Some(output) = output {
            output(workspace, text);
        }
    }

    /// A signal (no payload) for every event about `workspace` from now on, local or from
    /// another replica; a signal waiting unread stands for any number of events. Dropping the
    /// receiver unsubscribes. Costs no task: the A2A proxy takes one per delivery.
    pub fn watch(&self, workspace: WorkspaceId) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        self.watchers.lock().entry(workspace).or_default().push(tx);
        rx
    }

    /// Signals the watchers of the envelope's workspace, forgetting those that are gone.
    fn signal(&self, envelope: &Envelope) {
        let Some(id) = envelope.workspace() else {
            return;
        };
        let mut watchers = self.watchers.lock();
        if let Some(list) = watchers.get_mut(&id) {
            list.retain(|w| !matches!(w.try_send(()), Err(mpsc::error::TrySendError::Closed(()))));
            if list.is_empty() {
                watchers.remove(&id);
            }
        }
    }

    /// Hands an envelope to the local subscribers and watchers.
    fn deliver_locally(&self, envelope: Arc<Envelope>) {
        self.signal(&envelope);
        // No subscriber is not an error.
        let _ = self.tx.send(envelope);
    }

    /// Emits an event: persisted types are recorded first (if that fails, nothing is
    /// broadcast and the failure is logged); then every local subscriber gets it, and, on
    /// PostgreSQL, the other replicas (after the next group commit). Never fails the caller.
    pub async fn emit(&self, event: EventType, workspace_id: Option<WorkspaceId>, payload: Value) {
        let mut recorded = None;
        if event.is_recorded() {
            match self
                .store
                .events()
                .record(event.as_str(), workspace_id, &payload)
                .await
            {
                Ok(row) => recorded = Some(row.id),
                Err(e) => {
                    tracing::error!(event = event.as_str(), error = %e, "cannot record event");
                    return;
                }
            }
        }
        self.publish_and_notify(event, workspace_id, payload, recorded);
    }

    /// Broadcasts an event without recording it and without waiting: the local subscribers
    /// get it now, other replicas after the next group commit. For the broadcast-only types
    /// of the hot paths (a recorded type is recorded by [`EventBus::emit`] only).
    pub fn broadcast(&self, event: EventType, workspace_id: Option<WorkspaceId>, payload: Value) {
        if event.is_recorded() {
            tracing::error!(
                event = event.as_str(),
                "a recorded event type was broadcast only"
            );
        }
        self.publish_and_notify(event, workspace_id, payload, None);
    }

    fn publish_and_notify(
        &self,
        event: EventType,
        workspace_id: Option<WorkspaceId>,
        payload: Value,
        recorded: Option<uuid::Uuid>,
    ) {
        let envelope = Arc::new(Envelope {
            event: event.as_str().to_owned(),
            workspace_id: workspace_id.map(|w| w.to_string()).unwrap_or_default(),
            timestamp: now_rfc3339(),
            payload,
        });
        self.deliver_locally(Arc::clone(&envelope));
        replicas::notify(self, &envelope, recorded);
    }

    /// Hands an envelope to the local subscribers only.
    pub fn publish(&self, envelope: Envelope) {
        self.deliver_locally(Arc::new(envelope));
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.tx.subscribe()
    }

    /// A receiver of the events about one workspace from now on, buffered up to
    /// [`WORKSPACE_BUFFER`]; when the buffer is full, events are dropped for this receiver
    /// only. Dropping the receiver unsubscribes.
    pub fn subscribe_workspace(&self, id: WorkspaceId) -> mpsc::Receiver<Arc<Envelope>> {
        let mut events = self.subscribe();
        let (tx, rx) = mpsc::channel(WORKSPACE_BUFFER);
        tokio::spawn(async move {
            loop {
                let envelope = tokio::select! {
                    () = tx.closed() => return,
                    got = events.recv() => match got {
                        Ok(envelope) => envelope,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(workspace = %id, skipped = n, "subscriber fell behind");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if envelope.workspace() != Some(id) {
                    continue;
                }
                match tx.try_send(envelope) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(workspace = %id, "subscriber buffer full: event dropped");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
        rx
    }

    /// Asks every long-lived client (WebSocket) to close, at shutdown.
    pub fn close_clients(&self) {
        self.closing.send_replace(true);
    }

    /// Turns `true` when long-lived clients should close.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}
