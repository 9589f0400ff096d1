//! Events between replicas on one PostgreSQL: `NOTIFY` on emit, and a supervised listener
//! that hands the other replicas' events to the local subscribers.
//!
//! A notification is `{"origin", "envelope"}` when it fits in a `NOTIFY` payload; a bigger
//! recorded event is sent as `{"origin", "ref", "timestamp"}` and the listener reads the row
//! back; a bigger broadcast-only event stays local (logged at debug level).

use std::sync::Arc;
use std::time::Duration;

use molecule_store::{MAX_NOTIFY_BYTES, StoreError};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Envelope, EventBus};

/// The PostgreSQL notification channel of the event bus.
pub const NOTIFY_CHANNEL: &str = "molecule_events";

/// First wait before reconnecting the listener; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait before reconnecting the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A listener that ran this long before failing starts again from [`MIN_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct NoticeOut<'a> {
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    envelope: Option<&'a Envelope>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
}

#[derive(Deserialize)]
struct NoticeIn {
    origin: String,
    #[serde(default)]
    envelope: Option<Envelope>,
    #[serde(rename = "ref", default)]
    reference: Option<Uuid>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// Tells the other replicas about an event just published locally (PostgreSQL only), with
/// the store's next group commit. Failures are logged, never returned.
pub(super) fn notify(bus: &EventBus, envelope: &Envelope, recorded: Option<Uuid>) {
    if bus.store.backend() != molecule_store::Backend::Postgres {
        return;
    }
    let inline = NoticeOut {
        origin: &bus.origin,
        envelope: Some(envelope),
        reference: None,
        timestamp: None,
    };
    let text = match serde_json::to_string(&inline) {
        Ok(text) if text.len() <= MAX_NOTIFY_BYTES => text,
        Ok(_) => match recorded {
            Some(id) => {
                let by_ref = NoticeOut {
                    origin: &bus.origin,
                    envelope: None,
                    reference: Some(id),
                    timestamp: Some(&envelope.timestamp),
                };
                match serde_json::to_string(&by_ref) {
                    Ok(text) => text,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode an event notification");
                        return;
                    }
                }
            }
            None => {
                tracing::debug!(
                    event = %envelope.event,
                    "event too big to notify other replicas: delivered locally only"
                );
                return;
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an event notification");
            return;
        }
    };
    bus.store.notify_later(NOTIFY_CHANNEL, text);
}

/// Where the replica listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerState {
    /// Connecting for the first time.
    Starting,
    /// `LISTEN` is in effect: other replicas' events arrive.
    Listening,
    /// This backend has no other replicas (SQLite), or the store is closed.
    Unavailable,
}

/// The running replica listener.
#[derive(Debug)]
pub struct ListenerHandle {
    task: JoinHandle<()>,
    state: watch::Receiver<ListenerState>,
}

impl ListenerHandle {
    /// Waits until the listener first listens (`true`) or knows it never will (`false`,
    /// e.g. on SQLite).
    pub async fn ready(&mut self) -> bool {
        match self.state.wait_for(|s| *s != ListenerState::Starting).await {
            Ok(state) => *state == ListenerState::Listening,
            Err(_) => false,
        }
    }

    /// Stops the listener and waits until its connection is released.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Aborts a task when dropped, so that stopping the supervisor stops its current run.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl EventBus {
    /// Starts the task that feeds other replicas' events (PostgreSQL `LISTEN`) to the local
    /// subscribers. It reconnects with backoff after errors and restarts after a panic; on
    /// SQLite it ends at once.
    pub fn start_listener(&self) -> ListenerHandle {
        let (state_tx, state) = watch::channel(ListenerState::Starting);
        let task = tokio::spawn(supervise(self.clone(), Arc::new(state_tx)));
        ListenerHandle { task, state }
    }

    /// Handles one notification payload from the channel.
    async fn receive_notice(&self, text: &str) {
        let notice: NoticeIn = match serde_json::from_str(text) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a malformed event notification");
                return;
            }
        };
        if notice.origin == *self.origin {
            return;
        }
        let envelope = match (notice.envelope, notice.reference) {
            (Some(envelope), _) => envelope,
            (None, Some(id)) => match self.store.events().get(id).await {
                Ok(Some(row)) => Envelope {
                    event: row.event_type,
                    workspace_id: row.workspace_id.map(|w| w.to_string()).unwrap_or_default(),
                    timestamp: notice
                        .timestamp
                        .unwrap_or_else(|| row.created_at.format(&Rfc3339).unwrap_or_default()),
                    payload: row.payload.unwrap_or(serde_json::Value::Null),
                },
                Ok(None) => {
                    tracing::warn!(event_id = %id, "notified event not found");
                    return;
                }
                Err(e) => {
                    tracing::warn!(event_id = %id, error = %e, "cannot read a notified event");
                    return;
                }
            },
            (None, None) => {
                tracing::debug!("ignoring an event notification without an event");
                return;
            }
        };
        self.publish(envelope);
    }
}

async fn supervise(bus: EventBus, state: Arc<watch::Sender<ListenerState>>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        // Run in a task of its own, so that a panic ends only this run.
        let outcome = AbortOnDrop(tokio::spawn(listen(bus.clone(), Arc::clone(&state)))).await;
        match outcome {
            // No listener on this backend: nothing to do.
            Ok(Ok(())) => break,
            Ok(Err(e)) if e.is_closed() => break,
            Ok(Err(e)) => tracing::warn!(error = %e, "event listener failed: reconnecting"),
            Err(e) if e.is_panic() => tracing::error!("event listener panicked: restarting"),
            Err(_) => break,
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    state.send_replace(ListenerState::Unavailable);
}

/// One run of the listener: `Ok` when there is nothing to listen to (SQLite).
async fn listen(bus: EventBus, state: Arc<watch::Sender<ListenerState>>) -> Result<(), StoreError> {
    let Some(mut listener) = bus.store.event_listener(NOTIFY_CHANNEL).await? else {
        return Ok(());
    };
    state.send_replace(ListenerState::Listening);
    loop {
        let text = listener.recv().await?;
        bus.receive_notice(&text).await;
    }
}
