//! The queue of messages for busy targets (a2a.md §1.3): enqueue with idempotency on
//! (workspace, `messageId`), drains that complete a row only after its delivery, and the
//! periodic sweep that expires, reclaims and drains.
//!
//! Differences from the reference, on purpose: a drained message the target refuses again
//! stays `queued` (never marked completed), a drain goes on while deliveries succeed and the
//! target has room, drained deliveries are logged, expired rows are dropped, and rows a crash
//! left `dispatched` are reclaimed.

use std::time::Duration;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_store::{NewQueueItem, QueueItem, Workspace};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::caller::Caller;
use crate::delivery::Verdict;
use crate::normalize::{Normalized, normalize};
use crate::proxy::Proxy;
use crate::reply::Reply;

/// The priority of task messages (the only one written).
pub const PRIORITY_TASK: i16 = 50;

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

/// The largest `max_age_minutes` of a drop-stale request: ten years.
pub const MAX_AGE_MINUTES: u64 = 10 * 365 * 24 * 60;

impl Proxy {
    /// Queues a message for `ws` and answers 202 (503 if it cannot be queued). With
    /// `drain_now` a drain starts at once (messages were only waiting their turn).
    pub(crate) async fn enqueue(
        &self,
        ws: &Workspace,
        caller: &Caller,
        normalized: &Normalized,
        drain_now: bool,
    ) -> Reply {
        // An agent with a native session retries by itself: nothing is queued for it.
        if self.has_capability(ws.id, "session") {
            return Reply::native_session_busy();
        }
        let expires_at = normalized
            .expires_in_seconds
            .and_then(|s| OffsetDateTime::now_utc().checked_add(time::Duration::seconds(s)));
        let item = NewQueueItem {
            workspace_id: ws.id,
            caller_id: caller.workspace(),
            caller: caller.system().map(str::to_owned),
            priority: PRIORITY_TASK,
            body: normalized.body.clone(),
            method: Some(normalized.method.clone()).filter(|m| !m.is_empty()),
            idempotency_key: normalized.message_id.clone().filter(|k| !k.is_empty()),
            expires_at,
        };
        match self.inner.store.queue().enqueue(&item).await {
            Ok(queued) => {
                if drain_now {
                    self.spawn_drain(ws.id);
                }
                Reply::queued(queued.id, queued.depth, &normalized.body)
            }
            Err(e) => {
                tracing::error!(workspace = %ws.id, error = %e, "a2a: cannot queue a message");
                Reply::busy()
            }
        }
    }

    /// Starts a drain of `id`'s queue in the background, unless one is running here.
    pub fn spawn_drain(&self, id: WorkspaceId) {
        let proxy = self.clone();
        tokio::spawn(async move {
            proxy.drain(id).await;
        });
    }

    /// Delivers queued messages of `id` one after the other while the target is live, has
    /// room and accepts them. One drain per workspace runs in this process at a time; across
    /// replicas the store never hands one row to two drains.
    pub async fn drain(&self, id: WorkspaceId) -> DrainReport {
        let mut report = DrainReport::default();
        // A drain asked for while one runs is not lost: the running one goes round again.
        let Some(mut guard) = DrainGuard::take(self, id) else {
            return report;
        };
        loop {
            self.drain_pass(id, &mut report).await;
            if !guard.again_or_release() {
                return report;
            }
        }
    }

    /// Delivers until the queue is empty, the target has no room, or a delivery fails.
    async fn drain_pass(&self, id: WorkspaceId, report: &mut DrainReport) {
        let store = &self.inner.store;
        loop {
            let ws = match store.workspaces().get(id).await {
                Ok(Some(ws)) if has_room(&ws) => ws,
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
            match self.deliver_queued(&ws, &item).await {
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

    async fn deliver_queued(&self, ws: &Workspace, item: &QueueItem) -> Step {
        let store = &self.inner.store;
        let max = self.inner.settings.max_attempts;
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
            self.release(item, "access denied by hierarchy rules", 0)
                .await;
            return Step::Failed;
        }
        let raw = serde_json::to_vec(&item.body).unwrap_or_default();
        let normalized = match normalize(&raw) {
            Ok(n) => n,
            Err(_) => {
                self.release(item, "invalid queued body", 0).await;
                return Step::Failed;
            }
        };
        let deadline = match caller {
            Caller::User => None,
            _ => Some(self.inner.settings.agent_ceiling),
        };
        let delivery = self.deliver(ws, &caller, &normalized, deadline, true).await;
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
                    self.stitch(source, ws.id, delegation_id, answer.as_ref())
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
                self.release(item, &error, max).await;
                Step::Failed
            }
        }
    }

    async fn release(&self, item: &QueueItem, error: &str, max_attempts: i32) {
        if let Err(e) = self
            .inner
            .store
            .queue()
            .release(item.id, error, max_attempts)
            .await
        {
            tracing::error!(queue_id = %item.id, error = %e, "drain: cannot release a row");
        }
    }

    /// Drops expired messages, queues again the rows a crash left `dispatched` before
    /// `reclaim_before`, and drains every target with deliverable messages and room.
    pub async fn sweep(&self, reclaim_before: OffsetDateTime) -> SweepReport {
        let queue = self.inner.store.queue();
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
                    report.delivered += self.drain(id).await.delivered;
                }
            }
            Err(e) => tracing::warn!(error = %e, "queue sweep: cannot list targets"),
        }
        report
    }

    /// `GET /workspaces/:id/a2a/queue/:queue_id` for a caller identified as `identity`: the
    /// row's sender or target only; anything else is 404.
    pub async fn queue_status(&self, identity: Option<WorkspaceId>, queue_id: &str) -> Reply {
        let not_found = || Reply::error(404, "queue item not found");
        if queue_id.trim().is_empty() {
            return Reply::error(400, "queue_id required");
        }
        let (Some(identity), Ok(id)) = (identity, queue_id.parse::<Uuid>()) else {
            return not_found();
        };
        let item = match self.inner.store.queue().get(id).await {
            Ok(Some(item)) => item,
            Ok(None) => return not_found(),
            Err(e) => {
                tracing::error!(error = %e, "queue status lookup failed");
                return Reply::error(500, "lookup failed");
            }
        };
        if item.caller_id != Some(identity) && item.workspace_id != identity {
            return not_found();
        }
        let mut body = json!({
            "queue_id": item.id,
            "workspace_id": item.workspace_id,
            "status": item.status.as_str(),
            "priority": item.priority,
            "attempts": item.attempts,
            "enqueued_at": rfc3339(Some(item.enqueued_at)),
        });
        let optional = [
            ("last_error", item.last_error.clone().map(Value::String)),
            ("dispatched_at", rfc3339(item.dispatched_at)),
            ("completed_at", rfc3339(item.completed_at)),
            ("expires_at", rfc3339(item.expires_at)),
            ("response_body", item.response_body.clone()),
        ];
        for (key, value) in optional {
            if let Some(v) = value.filter(|v| !v.is_null()) {
                body[key] = v;
            }
        }
        Reply::json(200, body)
    }

    /// `POST /admin/a2a-queue/drop-stale`: drops queued messages older than the age (at most
    /// [`MAX_AGE_MINUTES`]).
    pub async fn drop_stale(
        &self,
        max_age_minutes: Option<&str>,
        workspace: Option<&str>,
    ) -> Reply {
        let minutes = match max_age_minutes.map(str::trim).filter(|s| !s.is_empty()) {
            None => 60,
            Some(s) => match s.parse::<u64>() {
                Ok(n) if (1..=MAX_AGE_MINUTES).contains(&n) => n,
                Ok(n) if n > MAX_AGE_MINUTES => {
                    return Reply::error(400, "max_age_minutes must be at most 5256000 (10 years)");
                }
                _ => return Reply::error(400, "max_age_minutes must be a positive integer"),
            },
        };
        let workspace = match workspace.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match s.parse::<WorkspaceId>() {
                Ok(id) => Some(id),
                Err(_) => return Reply::error(400, "workspace_id must be a UUID"),
            },
        };
        match self
            .inner
            .store
            .queue()
            .drop_stale(Duration::from_secs(minutes * 60), workspace)
            .await
        {
            Ok(n) => Reply::json(200, json!({ "dropped": n })),
            Err(e) => {
                tracing::error!(error = %e, "drop-stale failed");
                Reply::error(500, "failed to drop stale items")
            }
        }
    }
}

enum Step {
    Delivered,
    Busy,
    Failed,
}

/// Whether a target can take a queued message now: live and below its task limit.
fn has_room(ws: &Workspace) -> bool {
    matches!(
        ws.status,
        WorkspaceStatus::Online | WorkspaceStatus::Degraded
    ) && ws.active_tasks < ws.max_concurrent_tasks.max(1)
}

fn rfc3339(t: Option<OffsetDateTime>) -> Option<Value> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map(Value::String)
}

/// Marks a workspace as being drained in this process for as long as it lives; a drain
/// asked for meanwhile is remembered as "go round again".
struct DrainGuard<'a> {
    proxy: &'a Proxy,
    id: WorkspaceId,
    released: bool,
}

impl<'a> DrainGuard<'a> {
    /// The guard, or `None` (and a rerun noted) when a drain of `id` is running.
    fn take(proxy: &'a Proxy, id: WorkspaceId) -> Option<Self> {
        let mut running = proxy.inner.draining.lock();
        match running.get_mut(&id) {
            Some(again) => {
                *again = true;
                None
            }
            None => {
                running.insert(id, false);
                Some(DrainGuard {
                    proxy,
                    id,
                    released: false,
                })
            }
        }
    }

    /// Whether another drain was asked for since the last pass (the request is cleared);
    /// if not, the workspace is released in the same step, so no request falls in between.
    fn again_or_release(&mut self) -> bool {
        let mut running = self.proxy.inner.draining.lock();
        if let Some(again) = running.get_mut(&self.id)
            && std::mem::replace(again, false)
        {
            return true;
        }
        running.remove(&self.id);
        self.released = true;
        false
    }
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            self.proxy.inner.draining.lock().remove(&self.id);
        }
    }
}
