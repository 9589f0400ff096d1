//! Delegations (a2a.md §1.4): a workspace hands a task to another through the proxy, and the
//! platform keeps the bookkeeping as `delegation` activity rows of the source.
//!
//! Fixed on purpose: the request row follows the delegation to its end (also when a queue
//! drain completes it), failed result rows carry their delegation id and target, the list
//! gives one entry per delegation, and the A2A body uses `kind` parts.

use std::collections::HashMap;
use std::sync::Arc;

use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{ActivityRow, DelegationChange, NewActivity, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::caller::Caller;
use crate::delegation_rows::{REQUEST, RESULT, Tracked, delegation_row};
use crate::log::{self, preview, shorten};
use crate::reply::Reply;
use crate::send::{Message, send};
use crate::shared::Shared;

/// How many rows the delegation list reads.
const LIST_LIMIT: i64 = 50;

#[derive(Debug, Deserialize)]
struct DelegateBody {
    target_id: String,
    task: String,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RecordBody {
    target_id: String,
    task: String,
    delegation_id: String,
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    response_preview: Option<String>,
}

/// `POST /workspaces/:id/delegate`: records the delegation, sends it in the background and
/// answers 202 (200 for an idempotent replay).
pub(crate) async fn delegate(shared: &Arc<Shared>, source: WorkspaceId, raw: &[u8]) -> Reply {
    let Ok(body) = serde_json::from_slice::<DelegateBody>(raw) else {
        return Reply::error(400, "invalid delegation request");
    };
    if body.task.is_empty() || body.target_id.is_empty() {
        return Reply::error(400, "invalid delegation request");
    }
    let Ok(target) = body.target_id.parse::<WorkspaceId>() else {
        return Reply::error(400, "target_id must be a valid UUID");
    };
    if target == source {
        return Reply::error(400, "self-delegation not permitted");
    }
    if let Some(missing) = missing_party(shared, source, target).await {
        return missing;
    }
    let activity = shared.store.activity();
    let key = body.idempotency_key.clone().filter(|k| !k.is_empty());
    if let Some(key) = &key {
        match activity.by_idempotency_key(source, key).await {
            Ok(Some(row)) if row.status == "failed" => {
                if let Err(e) = activity.delete_failed_with_key(source, key).await {
                    tracing::warn!(error = %e, "delegate: cannot clear a failed attempt");
                }
            }
            Ok(Some(row)) => return idempotent_hit(&row, target),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "delegate: idempotency lookup failed"),
        }
    }
    let delegation_id = Uuid::new_v4().to_string();
    let row = NewActivity {
        summary: Some(format!("Delegating to {target}")),
        request_body: Some(json!({ "task": body.task, "delegation_id": delegation_id })),
        idempotency_key: key.clone(),
        ..delegation_row(source, Some(target), REQUEST, "pending")
    };
    let mut warning = None;
    match activity.record(&row).await {
        Ok(_) => {}
        Err(StoreError::Duplicate) => {
            if let Some(key) = &key
                && let Ok(Some(winner)) = activity.by_idempotency_key(source, key).await
            {
                return idempotent_hit(&winner, target);
            }
            warning = Some("delegation dispatched but status tracking unavailable");
        }
        Err(e) => {
            tracing::warn!(error = %e, "delegate: cannot record the request row");
            warning = Some("delegation dispatched but status tracking unavailable");
        }
    }
    sent(shared, source, target, &delegation_id, &body.task).await;
    let shared = Arc::clone(shared);
    let id = delegation_id.clone();
    tokio::spawn(async move {
        execute(&shared, source, target, &id, &body.task).await;
    });
    let mut reply =
        json!({ "delegation_id": delegation_id, "status": "delegated", "target_id": target });
    if let Some(w) = warning {
        reply["warning"] = json!(w);
    }
    Reply::json(202, reply)
}

/// Sends a delegation through the proxy as its source and records the outcome; one retry
/// when the message surely was not delivered (502, or 503 while the target restarts).
async fn execute(
    shared: &Arc<Shared>,
    source: WorkspaceId,
    target: WorkspaceId,
    id: &str,
    task: &str,
) {
    let tracked = Tracked {
        shared,
        source,
        target,
        id,
    };
    tracked.dispatched().await;
    let body = json!({
        "method": "message/send",
        "params": { "message": {
            "role": "user",
            "messageId": id,
            "parts": [{ "kind": "text", "text": task }],
            "metadata": { "delegation_id": id },
        }},
    });
    let message = Message {
        target,
        caller: Caller::Workspace(source),
        body: serde_json::to_vec(&body).unwrap_or_default(),
        timeout: None,
        log: true,
    };
    let mut reply = send(shared, message.clone()).await;
    if not_delivered(&reply) {
        tokio::time::sleep(shared.settings.delegation_retry_delay).await;
        reply = send(shared, message).await;
    }
    if reply.is_queued() {
        tracked.queued().await;
    } else if reply.is_success() {
        let answer = reply.body.to_json();
        tracked.completed(Some(&answer), None).await;
    } else {
        let error = reply
            .error_message()
            .unwrap_or_else(|| format!("delegation failed with status {}", reply.status));
        tracked.failed(error).await;
    }
}

/// `DELEGATION_SENT` on the source: a delegation to `target` is on its way.
async fn sent(shared: &Shared, source: WorkspaceId, target: WorkspaceId, id: &str, task: &str) {
    let payload = json!({
        "delegation_id": id,
        "target_id": target,
        "task_preview": preview(task, 100),
    });
    shared
        .platform
        .emit(EventType::DelegationSent, source, payload)
        .await;
}

/// `POST /workspaces/:id/delegations/record`: an agent that delegated by itself records it.
pub(crate) async fn record(shared: &Shared, source: WorkspaceId, raw: &[u8]) -> Reply {
    let Ok(body) = serde_json::from_slice::<RecordBody>(raw) else {
        return Reply::error(400, "invalid request body");
    };
    if body.task.is_empty() || body.delegation_id.is_empty() || body.target_id.is_empty() {
        return Reply::error(400, "invalid request body");
    }
    let Ok(target) = body.target_id.parse::<WorkspaceId>() else {
        return Reply::error(400, "target_id must be a valid UUID");
    };
    if let Some(missing) = missing_party(shared, source, target).await {
        return missing;
    }
    let row = NewActivity {
        summary: Some(format!("Delegating to {target}")),
        request_body: Some(json!({ "task": body.task, "delegation_id": body.delegation_id })),
        ..delegation_row(source, Some(target), REQUEST, "dispatched")
    };
    if let Err(e) = log::record(&shared.store, shared.platform.as_ref(), &row).await {
        tracing::error!(error = %e, "record delegation failed");
        return Reply::error(500, "failed to record delegation");
    }
    sent(shared, source, target, &body.delegation_id, &body.task).await;
    Reply::json(
        202,
        json!({ "delegation_id": body.delegation_id, "status": "recorded" }),
    )
}

/// `POST /workspaces/:id/delegations/:delegation_id/update`: the agent reports the end.
pub(crate) async fn update(shared: &Shared, source: WorkspaceId, id: &str, raw: &[u8]) -> Reply {
    let Ok(body) = serde_json::from_slice::<UpdateBody>(raw) else {
        return Reply::error(400, "invalid request body");
    };
    if body.status != "completed" && body.status != "failed" {
        return Reply::error(400, "status must be 'completed' or 'failed'");
    }
    let error = body.error.clone().filter(|e| !e.is_empty());
    let change = DelegationChange {
        status: body.status.clone(),
        summary: None,
        response_body: None,
        error_detail: error.clone(),
    };
    match shared
        .store
        .activity()
        .update_delegation(source, id, REQUEST, &change)
        .await
    {
        Ok(0) => return Reply::error(404, "delegation not found"),
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "delegation update failed");
            return Reply::error(500, "failed to update delegation");
        }
    }
    let target = target_of(shared, source, id).await;
    let preview_text = body.response_preview.clone().unwrap_or_default();
    let (event, payload) = if body.status == "completed" {
        let row = NewActivity {
            summary: Some(format!(
                "Delegation completed ({})",
                preview(&preview_text, 80)
            )),
            response_body: Some(json!({ "text": preview_text, "delegation_id": id })),
            ..delegation_row(source, target, RESULT, "completed")
        };
        shared.record_quietly(row).await;
        (
            EventType::DelegationComplete,
            json!({ "delegation_id": id, "response_preview": preview_text }),
        )
    } else {
        (
            EventType::DelegationFailed,
            json!({ "delegation_id": id, "error": error.unwrap_or_default() }),
        )
    };
    shared.platform.emit(event, source, payload).await;
    Reply::json(200, json!({ "status": body.status, "delegation_id": id }))
}

/// The 404 answer when the source or the target of a delegation is not a live workspace
/// (a removed one included), so that nothing is recorded or sent; `None` when both are.
async fn missing_party(shared: &Shared, source: WorkspaceId, target: WorkspaceId) -> Option<Reply> {
    let workspaces = shared.store.workspaces();
    for (id, message) in [
        (source, "workspace not found"),
        (target, "target workspace not found"),
    ] {
        match workspaces.get(id).await {
            Ok(Some(ws)) if !ws.status.is_removed() => {}
            Ok(_) => return Some(Reply::error(404, message)),
            Err(e) => {
                tracing::error!(error = %e, "delegation: cannot read a workspace");
                return Some(Reply::error(500, "query failed"));
            }
        }
    }
    None
}

async fn target_of(shared: &Shared, source: WorkspaceId, id: &str) -> Option<WorkspaceId> {
    let rows = shared
        .store
        .activity()
        .delegation_rows(source, LIST_LIMIT)
        .await
        .ok()?;
    rows.into_iter()
        .find(|r| delegation_id_of(r).as_deref() == Some(id))
        .and_then(|r| r.target_id)
}

/// `GET /workspaces/:id/delegations`: one entry per delegation among the newest rows,
/// newest first; a finished row (completed, failed) wins over an earlier state.
pub(crate) async fn list(shared: &Shared, source: WorkspaceId) -> Reply {
    let rows = match shared
        .store
        .activity()
        .delegation_rows(source, LIST_LIMIT)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "delegation list failed");
            return Reply::error(500, "query failed");
        }
    };
    let mut best: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let key = delegation_id_of(row).unwrap_or_else(|| row.id.to_string());
        match best.get(&key) {
            None => {
                best.insert(key.clone(), i);
                order.push(key);
            }
            Some(&j) if !finished(&rows[j]) && finished(row) => {
                best.insert(key, i);
            }
            Some(_) => {}
        }
    }
    let items: Vec<Value> = order
        .iter()
        .filter_map(|k| best.get(k))
        .map(|&i| list_item(&rows[i]))
        .collect();
    Reply::json(200, Value::Array(items))
}

fn finished(row: &ActivityRow) -> bool {
    row.status == "completed" || row.status == "failed"
}

fn delegation_id_of(row: &ActivityRow) -> Option<String> {
    [&row.request_body, &row.response_body]
        .into_iter()
        .flatten()
        .find_map(|b| b.get("delegation_id").and_then(Value::as_str))
        .map(str::to_owned)
}

fn list_item(row: &ActivityRow) -> Value {
    let mut item = json!({
        "id": row.id,
        "type": row.method,
        "source_id": row.source_id,
        "target_id": row.target_id,
        "summary": row.summary,
        "status": row.status,
        "created_at": row.created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    });
    if let Some(id) = delegation_id_of(row) {
        item["delegation_id"] = json!(id);
    }
    if let Some(e) = row.error_detail.as_deref().filter(|e| !e.is_empty()) {
        item["error"] = json!(e);
    }
    if let Some(body) = &row.response_body {
        let text = body
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        item["response_preview"] = json!(shorten(&text, 300, "..."));
    }
    item
}

fn idempotent_hit(row: &ActivityRow, target: WorkspaceId) -> Reply {
    Reply::json(
        200,
        json!({
            "delegation_id": delegation_id_of(row),
            "status": row.status,
            "target_id": row.target_id.unwrap_or(target),
            "idempotent_hit": true,
        }),
    )
}

/// Whether a proxy answer means the message surely did not reach the agent.
fn not_delivered(reply: &Reply) -> bool {
    reply.status == 502
        || (reply.status == 503
            && reply.body.to_json().get("restarting") == Some(&Value::Bool(true)))
}
