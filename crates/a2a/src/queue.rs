//! The queue of messages for busy targets (a2a.md §1.3): enqueue with idempotency on
//! (workspace, `messageId`), a row's status for its sender or target, and the admin's
//! drop-stale. Draining it is [`crate::Proxy::drain`] and [`crate::Proxy::sweep`].

use std::sync::Arc;
use std::time::Duration;

use molecule_domain::WorkspaceId;
use molecule_store::{NewQueueItem, Store, Workspace};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::caller::Caller;
use crate::drain::spawn_drain;
use crate::normalize::Normalized;
use crate::reply::Reply;
use crate::shared::Shared;

pub use crate::drain::{DrainReport, SweepReport};

/// The priority of task messages (the only one written).
pub const PRIORITY_TASK: i16 = 50;

/// The largest `max_age_minutes` of a drop-stale request: ten years.
pub const MAX_AGE_MINUTES: u64 = 10 * 365 * 24 * 60;

/// Queues a message for `ws` and answers 202 (503 if it cannot be queued). With
/// `drain_now` a drain starts at once (messages were only waiting their turn).
pub(crate) async fn enqueue(
    shared: &Arc<Shared>,
    ws: &Workspace,
    caller: &Caller,
    normalized: &Normalized,
    drain_now: bool,
) -> Reply {
    // An agent with a native session retries by itself: nothing is queued for it.
    if shared.has_capability(ws.id, "session") {
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
    match shared.store.queue().enqueue(&item).await {
        Ok(queued) => {
            if drain_now {
                spawn_drain(shared, ws.id);
            }
            Reply::queued(queued.id, queued.depth, &normalized.body)
        }
        Err(e) => {
            tracing::error!(workspace = %ws.id, error = %e, "a2a: cannot queue a message");
            Reply::busy()
        }
    }
}

/// `GET /workspaces/:id/a2a/queue/:queue_id` for a caller identified as `identity`: the
/// row's sender or target only; anything else is 404.
pub(crate) async fn status(store: &Store, identity: Option<WorkspaceId>, queue_id: &str) -> Reply {
    let not_found = || Reply::error(404, "queue item not found");
    if queue_id.trim().is_empty() {
        return Reply::error(400, "queue_id required");
    }
    let (Some(identity), Ok(id)) = (identity, queue_id.parse::<Uuid>()) else {
        return not_found();
    };
    let item = match store.queue().get(id).await {
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
pub(crate) async fn drop_stale(
    store: &Store,
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
    match store
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

fn rfc3339(t: Option<OffsetDateTime>) -> Option<Value> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map(Value::String)
}
