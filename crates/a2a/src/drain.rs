//! Draining a target's queue (a2a.md §1.3): deliveries of its queued messages one after the
//! other, completing a row only after its delivery, and the periodic sweep that expires,
//! reclaims and drains.
//!
//! Differences from the reference, on purpose: a drained message the target refuses again
//! stays `queued` (never marked completed), a drain goes on while deliveries succeed and the
//! target has room, drained deliveries are logged, expired rows are dropped, and rows a crash
//! left `dispatched` are reclaimed.

use std::collections::HashMap;
use std::sync::Arc;

use molecule_domain::WorkspaceId;
use molecule_store::{QueueItem, Store, Workspace};
use parking_lot::Mutex;
use time::OffsetDateTime;

use crate::caller::Caller;
use crate::delegation_rows::Tracked;
use crate::delivery::{Verdict, deliver};
use crate::normalize::normalize;
use crate::shared::Shared;
use crate::target::{is_full, is_live};

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Messages delivered and completed.
    pub delivered: usize,
    /// Messages put back because the target was busy again.
    pub requeued: usize,
    /// Messages whose delivery failed (queued again, or failed for good).
    pub failed: usize,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired messages dropped.
    pub expired: u64,
    /// Messages a crash left dispatched, queued again.
    pub reclaimed: u64,
    /// Messages delivered.
    pub delivered: usize,
}

/// Starts a drain of `id`'s queue in the background, unless one is running here.
pub(crate) fn spawn_drain(shared: &Arc<Shared>, id: WorkspaceId) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        drain(&shared, id).await;
    });
}

/// Delivers queued messages of `id` one after the other while the target is live, has
/// room and accepts them. One drain per workspace runs in this process at a time; across
/// replicas the store never hands one row to two drains.
pub(crate) async fn drain(shared: &Arc<Shared>, id: WorkspaceId) -> DrainReport {
    let mut report = DrainReport::default();
    // A drain asked for while one runs is not lost: the running one goes round again.
    let Some(mut guard) = DrainGuard::take(&shared.draining, id) else {
        return report;
    };
    loop {
        drain_pass(shared, id, &mut report).await;
        if !guard.again_or_release() {
            return report;
        }
    }
}

/// Drops expired messages, queues again the rows a crash left `dispatched` before
/// `reclaim_before`, and drains every target with deliverable messages and room.
pub(crate) async fn sweep(shared: &Arc<Shared>, reclaim_before: OffsetDateTime) -> SweepReport {
    let queue = shared.store.queue();
    let mut report = SweepReport::default();
    match queue.expire().await {
        Ok(n) => report.expired = n,
        Err(e) => tracing::warn!(error = %e, "queue sweep: expire failed"),
    }
    match queue.reclaim(reclaim_before).await {
        Ok(n) => report.reclaimed = n,
        Err(e) => tracing::warn!(error = %e, "queue sweep: reclaim failed"),
    }
    match queue.with_queued().await {
        Ok(targets) => {
            for id in targets {
                report.delivered += drain(shared, id).await.delivered;
            }
        }
        Err(e) => tracing::warn!(error = %e, "queue sweep: cannot list targets"),
    }
    report
}

/// Delivers until the queue is empty, the target has no room, or a delivery fails.
async fn drain_pass(shared: &Arc<Shared>, id: WorkspaceId, report: &mut DrainReport) {
    let store = &shared.store;
    loop {
        let ws = match store.workspaces().routing(id).await {
            Ok(Some(r)) if is_live(&r.workspace) && !is_full(&r.workspace) => r,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(workspace = %id, error = %e, "drain: cannot read the target");
                return;
            }
        };
        let item = match store.queue().dequeue(id).await {
            Ok(Some(item)) => item,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(workspace = %id, error = %e, "drain: dequeue failed");
                return;
            }
        };
        match deliver_queued(shared, &ws.workspace, &item).await {
            Step::Delivered => report.delivered += 1,
            Step::Busy => {
                report.requeued += 1;
                return;
            }
            Step::Failed => {
                report.failed += 1;
                return;
            }
        }
    }
}

/// What one drained delivery means for the drain.
enum Step {
    /// Delivered: go on.
    Delivered,
    /// The target is busy again (or did not answer in time): stop.
    Busy,
    /// The message failed: stop.
    Failed,
}

/// Delivers one dequeued message and settles its row.
async fn deliver_queued(shared: &Arc<Shared>, ws: &Workspace, item: &QueueItem) -> Step {
    let store = &shared.store;
    let max = shared.settings.max_attempts;
    let caller = match (&item.caller_id, &item.caller) {
        (Some(id), _) => Caller::Workspace(*id),
        (None, Some(system)) => Caller::System(system.clone()),
        (None, None) => Caller::User,
    };
    if let Caller::Workspace(c) = caller
        && c != ws.id
        && !store
            .workspaces()
            .can_communicate(c, ws.id)
            .await
            .unwrap_or(false)
    {
        release(store, item, "access denied by hierarchy rules", 0).await;
        return Step::Failed;
    }
    let raw = serde_json::to_vec(&item.body).unwrap_or_default();
    let normalized = match normalize(&raw) {
        Ok(n) => n,
        Err(_) => {
            release(store, item, "invalid queued body", 0).await;
            return Step::Failed;
        }
    };
    let deadline = shared.settings.ceiling_for(&caller);
    let delivery = deliver(shared, ws, &caller, &normalized, deadline, true).await;
    match delivery.verdict {
        Verdict::Delivered | Verdict::Unanswered => {
            let answer = delivery.reply.body.to_json();
            let answer = (!answer.is_null()).then_some(answer);
            if let Err(e) = store.queue().complete(item.id, answer.as_ref()).await {
                tracing::error!(queue_id = %item.id, error = %e, "drain: cannot complete a delivered row");
            }
            if delivery.verdict == Verdict::Delivered
                && let (Some(source), Some(delegation_id)) =
                    (item.caller_id, normalized.delegation_id.as_deref())
            {
                let tracked = Tracked {
                    shared,
                    source,
                    target: ws.id,
                    id: delegation_id,
                };
                tracked
                    .completed(answer.as_ref(), Some("queue_drain"))
                    .await;
            }
            if delivery.verdict == Verdict::Delivered {
                Step::Delivered
            } else {
                Step::Busy
            }
        }
        Verdict::NotTaken => {
            if let Err(e) = store.queue().requeue(item.id).await {
                tracing::error!(queue_id = %item.id, error = %e, "drain: cannot put a row back");
            }
            Step::Busy
        }
        Verdict::Failed => {
            let error = delivery
                .reply
                .error_message()
                .or_else(|| {
                    reqwest::StatusCode::from_u16(delivery.reply.status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "unknown drain dispatch error".to_owned());
            release(store, item, &error, max).await;
            Step::Failed
        }
    }
}

/// Gives a row back to the queue with `error` (failed for good after `max_attempts`).
async fn release(store: &Store, item: &QueueItem, error: &str, max_attempts: i32) {
    if let Err(e) = store.queue().release(item.id, error, max_attempts).await {
        tracing::error!(queue_id = %item.id, error = %e, "drain: cannot release a row");
    }
}

/// Marks a workspace as being drained in this process for as long as it lives; a drain
/// asked for meanwhile is remembered as "go round again".
struct DrainGuard<'a> {
    /// The workspaces being drained, each with "go round again".
    running: &'a Mutex<HashMap<WorkspaceId, bool>>,
    id: WorkspaceId,
    released: bool,
}

impl<'a> DrainGuard<'a> {
    /// The guard, or `None` (and a rerun noted) when a drain of `id` is running.
    fn take(running: &'a Mutex<HashMap<WorkspaceId, bool>>, id: WorkspaceId) -> Option<Self> {
        let mut all = running.lock();
        match all.get_mut(&id) {
            Some(again) => {
                *again = true;
                None
            }
            None => {
                all.insert(id, false);
                Some(DrainGuard {
                    running,
                    id,
                    released: false,
                })
            }
        }
    }

    /// Whether another drain was asked for since the last pass (the request is cleared);
    /// if not, the workspace is released in the same step, so no request falls in between.
    fn again_or_release(&mut self) -> bool {
        let mut all = self.running.lock();
        if let Some(again) = all.get_mut(&self.id)
            && std::mem::replace(again, false)
        {
            return true;
        }
        all.remove(&self.id);
        self.released = true;
        false
    }
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            self.running.lock().remove(&self.id);
        }
    }
}
