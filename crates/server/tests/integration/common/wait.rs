//! Bounded waits. Nothing here sleeps to synchronise: a wait ends as soon as what it waits for
//! holds, and its bound only turns a hang into a failure that says what was awaited.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::WorkspaceId;
use molecule_server::events::Envelope;
use serde_json::Value;

/// The bound of every wait of the tests (long: a container start on a busy machine).
pub const WITHIN: Duration = Duration::from_secs(60);

/// How often a polling wait looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// A subscription to a test server's events.
pub type Events = tokio::sync::broadcast::Receiver<Arc<Envelope>>;

/// Polls `ready` until it gives a value; fails naming `what` after [`WITHIN`].
pub async fn poll<T, F, Fut>(what: &str, mut ready: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if let Some(value) = ready().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `done` until it holds; fails naming `what` after [`WITHIN`].
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(what, || {
        let done = done();
        async move { done.await.then_some(()) }
    })
    .await;
}

/// The next event `wanted` accepts, skipping the others; fails naming `what` after
/// [`WITHIN`].
pub async fn next_event_where(
    rx: &mut Events,
    what: &str,
    wanted: impl Fn(&Envelope) -> bool,
) -> Arc<Envelope> {
    let wait = async {
        loop {
            let event = rx.recv().await.unwrap();
            if wanted(&event) {
                return event;
            }
        }
    };
    tokio::time::timeout(WITHIN, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} event in time"))
}

/// The next `event` about workspace `id`, as JSON (the envelope with its payload).
pub async fn next_event(rx: &mut Events, event: &str, id: WorkspaceId) -> Value {
    let about = id.to_string();
    let got = next_event_where(rx, event, |e| e.event == event && e.workspace_id == about).await;
    serde_json::to_value(&*got).unwrap()
}
