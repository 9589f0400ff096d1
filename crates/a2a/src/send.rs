//! The A2A proxy pipeline (a2a.md §1.2): the checks of one message in the spec's order, then
//! the queue or delivery.
//!
//! The server establishes the caller (token, system prefix) before calling [`send`]; from
//! there the order is: hierarchy → target lookup → budget → payload normalisation →
//! poll-mode short-circuit → capacity (queue) → URL → delivery.

use std::sync::Arc;
use std::time::Duration;

use molecule_domain::{DeliveryMode, WorkspaceId};
use molecule_store::Workspace;

use crate::caller::Caller;
use crate::delivery::{Verdict, deliver};
use crate::normalize::{Normalized, normalize};
use crate::queue::enqueue;
use crate::reply::Reply;
use crate::shared::Shared;
use crate::target::{is_full, is_live, receive_row, summary};

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Message {
    /// The target workspace.
    pub target: WorkspaceId,
    /// Who sends it.
    pub caller: Caller,
    /// The request body as received.
    pub body: Vec<u8>,
    /// A bound on the whole delivery (`X-Timeout`).
    pub timeout: Option<Duration>,
    /// Whether to write activity rows and broadcasts for it.
    pub log: bool,
}

/// Delivers one message, or queues it, and says what the caller gets back.
pub(crate) async fn send(shared: &Arc<Shared>, msg: Message) -> Reply {
    let store = &shared.store;
    if let Caller::Workspace(caller) = msg.caller
        && caller != msg.target
    {
        match store.workspaces().can_communicate(caller, msg.target).await {
            Ok(true) => {}
            Ok(false) => return denied(),
            Err(e) => {
                tracing::warn!(error = %e, "a2a: hierarchy check failed (denied)");
                return denied();
            }
        }
    }
    let routing = match store.workspaces().routing(msg.target).await {
        Ok(Some(routing)) if !routing.workspace.status.is_removed() => routing,
        Ok(_) => return Reply::error(404, "workspace not found"),
        Err(e) => {
            tracing::error!(error = %e, "a2a: target lookup failed");
            return Reply::error(500, "lookup failed");
        }
    };
    let ws = &routing.workspace;
    if ws
        .budget_limit
        .is_some_and(|limit| ws.monthly_spend >= limit)
    {
        return Reply::error(402, "workspace budget limit exceeded");
    }
    let normalized = match normalize(&msg.body) {
        Ok(n) => n,
        Err(e) => return Reply::json(400, e.body()),
    };
    if ws.delivery_mode == DeliveryMode::Poll {
        if msg.log {
            log_poll(shared, ws, &msg.caller, &normalized).await;
        }
        return Reply::poll_queued(&normalized.method, &normalized.body);
    }
    match queue_ahead(shared, ws).await {
        Ahead::Busy => return enqueue(shared, ws, &msg.caller, &normalized, false).await,
        Ahead::Waiting => return enqueue(shared, ws, &msg.caller, &normalized, true).await,
        Ahead::Free => {}
    }
    let deadline = msg.timeout.or(shared.settings.ceiling_for(&msg.caller));
    let delivery = deliver(shared, ws, &msg.caller, &normalized, deadline, msg.log).await;
    match delivery.verdict {
        Verdict::NotTaken => enqueue(shared, ws, &msg.caller, &normalized, false).await,
        _ => delivery.reply,
    }
}

/// Whether a message must wait in the target's queue, and why.
enum Ahead {
    /// Nothing waits and the agent has room: deliver now.
    Free,
    /// The agent reported no free task slot.
    Busy,
    /// Messages are already waiting (they go first).
    Waiting,
}

/// Whether a message to `ws` must wait in its queue: the agent reported no free task slot,
/// or messages are already waiting (they go first).
async fn queue_ahead(shared: &Shared, ws: &Workspace) -> Ahead {
    if is_live(ws) && is_full(ws) {
        return Ahead::Busy;
    }
    match shared.store.queue().may_have_waiting(ws.id).await {
        Ok(false) => Ahead::Free,
        Ok(true) => Ahead::Waiting,
        Err(e) => {
            tracing::warn!(workspace = %ws.id, error = %e, "a2a: queue depth unknown");
            Ahead::Free
        }
    }
}

/// The `a2a_receive` row of a message left for a poll-mode target.
async fn log_poll(shared: &Shared, ws: &Workspace, caller: &Caller, normalized: &Normalized) {
    let title = format!("{} (queued for poll)", summary(normalized, ws));
    shared
        .record_quietly(receive_row(ws, caller, normalized, title))
        .await;
}

fn denied() -> Reply {
    Reply::error(
        403,
        "access denied: workspaces cannot communicate per hierarchy rules",
    )
}
