//! Delegations (a2a.md §1.4): a workspace hands a task to another through the proxy, and the
//! platform keeps the bookkeeping as `delegation` activity rows of the source.
//!
//! Fixed on purpose: the request row follows the delegation to its end (also when a queue
//! drain completes it), failed result rows carry their delegation id and target, the list
//! gives one entry per delegation, and the A2A body uses `kind` parts.

use std::collections::HashMap;

use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{ActivityRow, DelegationChange, NewActivity, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::caller::Caller;
use crate::log::{self, preview};
use crate::proxy::{Message, Proxy};
use crate::reply::Reply;

/// How many rows the delegation list reads.
pub const LIST_LIMIT: i64 = 50;

const REQUEST: &str = "delegate";
const RESULT: &str = "delegate_result";

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

impl Proxy {
    /// `POST /workspaces/:id/delegate`: records the delegation, sends it in the background and
    /// answers 202 (200 for an idempotent replay).
    pub async fn delegate(&self, source: WorkspaceId, raw: &[u8]) -> Reply {
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
        if let Some(missing) = self.missing_party(source, target).await {
            return missing;
        }
        let activity = self.inner.store.activity();
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
        self.inner
            .platform
            .emit(
                EventType::DelegationSent,
                source,
                json!({
                    "delegation_id": delegation_id,
                    "target_id": target,
                    "task_preview": preview(&body.task, 100),
                }),
            )
            .await;
        let proxy = self.clone();
        let id = delegation_id.clone();
        tokio::spawn(async move {
            proxy.execute(source, target, &id, &body.task).await;
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
    async fn execute(&self, source: WorkspaceId, target: WorkspaceId, id: &str, task: &str) {
        self.set_request_status(source, id, "dispatched", None)
            .await;
        self.status_event(source, target, id, "dispatched").await;
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
        let mut reply = self.send(message.clone()).await;
        if not_delivered(&reply) {
            tokio::time::sleep(self.inner.settings.delegation_retry_delay).await;
            reply = self.send(message).await;
        }
        if reply.is_queued() {
            self.set_request_status(source, id, "queued", None).await;
            self.result_row(
                source,
                target,
                "queued",
                "Delegation queued — target at capacity".into(),
                Some(json!({ "delegation_id": id, "queued": true })),
                None,
            )
            .await;
            self.status_event(source, target, id, "queued").await;
        } else if reply.is_success() {
            let answer = reply.body.to_json();
            self.completed(source, target, id, Some(&answer), None)
                .await;
        } else {
            let error = reply
                .error_message()
                .unwrap_or_else(|| format!("delegation failed with status {}", reply.status));
            self.set_request_status(source, id, "failed", Some(&error))
                .await;
            self.result_row(
                source,
                target,
                "failed",
                "Delegation failed".into(),
                Some(json!({ "delegation_id": id })),
                Some(error.clone()),
            )
            .await;
            self.inner
                .platform
                .emit(
                    EventType::DelegationFailed,
                    source,
                    json!({ "delegation_id": id, "target_id": target, "error": error }),
                )
                .await;
        }
    }

    /// A queue drain delivered a delegated message: the delegation is complete.
    pub(crate) async fn stitch(
        &self,
        source: WorkspaceId,
        target: WorkspaceId,
        id: &str,
        answer: Option<&Value>,
    ) {
        self.completed(source, target, id, answer, Some("queue_drain"))
            .await;
    }

    async fn completed(
        &self,
        source: WorkspaceId,
        target: WorkspaceId,
        id: &str,
        answer: Option<&Value>,
        via: Option<&str>,
    ) {
        let text = answer.map(reply_text).unwrap_or_default();
        let summary = format!("Delegation completed ({})", preview(&text, 80));
        let response = json!({ "text": text, "delegation_id": id });
        let activity = self.inner.store.activity();
        let change = DelegationChange {
            status: "completed".into(),
            summary: Some(summary.clone()),
            response_body: Some(response.clone()),
            error_detail: None,
        };
        let updated = activity
            .update_delegation(source, id, RESULT, &change)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "delegation: cannot update result rows");
                0
            });
        if updated == 0 {
            self.result_row(source, target, "completed", summary, Some(response), None)
                .await;
        }
        self.set_request_status(source, id, "completed", None).await;
        let mut payload = json!({
            "delegation_id": id,
            "target_id": target,
            "response_preview": preview(&text, 200),
        });
        if let Some(via) = via {
            payload["via"] = json!(via);
        }
        self.inner
            .platform
            .emit(EventType::DelegationComplete, source, payload)
            .await;
    }

    async fn set_request_status(
        &self,
        source: WorkspaceId,
        id: &str,
        status: &str,
        error: Option<&str>,
    ) {
        let change = DelegationChange {
            status: status.into(),
            summary: None,
            response_body: None,
            error_detail: error.map(str::to_owned),
        };
        if let Err(e) = self
            .inner
            .store
            .activity()
            .update_delegation(source, id, REQUEST, &change)
            .await
        {
            tracing::warn!(error = %e, "delegation: cannot update the request row");
        }
    }

    async fn result_row(
        &self,
        source: WorkspaceId,
        target: WorkspaceId,
        status: &str,
        summary: String,
        response: Option<Value>,
        error: Option<String>,
    ) {
        let row = NewActivity {
            summary: Some(summary),
            response_body: response,
            error_detail: error,
            ..delegation_row(source, Some(target), RESULT, status)
        };
        log::record_quietly(&self.inner.store, self.inner.platform.as_ref(), &row).await;
    }

    async fn status_event(&self, source: WorkspaceId, target: WorkspaceId, id: &str, status: &str) {
        self.inner
            .platform
            .emit(
                EventType::DelegationStatus,
                source,
                json!({ "delegation_id": id, "target_id": target, "status": status }),
            )
            .await;
    }

    /// `POST /workspaces/:id/delegations/record`: an agent that delegated by itself records it.
    pub async fn record_delegation(&self, source: WorkspaceId, raw: &[u8]) -> Reply {
        let Ok(body) = serde_json::from_slice::<RecordBody>(raw) else {
            return Reply::error(400, "invalid request body");
        };
        if body.task.is_empty() || body.delegation_id.is_empty() || body.target_id.is_empty() {
            return Reply::error(400, "invalid request body");
        }
        let Ok(target) = body.target_id.parse::<WorkspaceId>() else {
            return Reply::error(400, "target_id must be a valid UUID");
        };
        if let Some(missing) = self.missing_party(source, target).await {
            return missing;
        }
        let row = NewActivity {
            summary: Some(format!("Delegating to {target}")),
            request_body: Some(json!({ "task": body.task, "delegation_id": body.delegation_id })),
            ..delegation_row(source, Some(target), REQUEST, "dispatched")
        };
        if let Err(e) = log::record(&self.inner.store, self.inner.platform.as_ref(), &row).await {
            tracing::error!(error = %e, "record delegation failed");
            return Reply::error(500, "failed to record delegation");
        }
        self.inner
            .platform
            .emit(
                EventType::DelegationSent,
                source,
                json!({
                    "delegation_id": body.delegation_id,
                    "target_id": target,
                    "task_preview": preview(&body.task, 100),
                }),
            )
            .await;
        Reply::json(
            202,
            json!({ "delegation_id": body.delegation_id, "status": "recorded" }),
        )
    }

    /// `POST /workspaces/:id/delegations/:delegation_id/update`: the agent reports the end.
    pub async fn update_delegation(&self, source: WorkspaceId, id: &str, raw: &[u8]) -> Reply {
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
        match self
            .inner
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
        let target = self.target_of(source, id).await;
        let preview_text = body.response_preview.clone().unwrap_or_default();
        if body.status == "completed" {
            let row = NewActivity {
                summary: Some(format!(
                    "Delegation completed ({})",
                    preview(&preview_text, 80)
                )),
                response_body: Some(json!({ "text": preview_text, "delegation_id": id })),
                ..delegation_row(source, target, RESULT, "completed")
            };
            log::record_quietly(&self.inner.store, self.inner.platform.as_ref(), &row).await;
            self.inner
                .platform
                .emit(
                    EventType::DelegationComplete,
                    source,
                    json!({ "delegation_id": id, "response_preview": preview_text }),
                )
                .await;
        } else {
            self.inner
                .platform
                .emit(
                    EventType::DelegationFailed,
                    source,
                    json!({ "delegation_id": id, "error": error.unwrap_or_default() }),
                )
                .await;
        }
        Reply::json(200, json!({ "status": body.status, "delegation_id": id }))
    }

    /// The 404 answer when the source or the target of a delegation is not a live workspace
    /// (a removed one included), so that nothing is recorded or sent; `None` when both are.
    async fn missing_party(&self, source: WorkspaceId, target: WorkspaceId) -> Option<Reply> {
        let workspaces = self.inner.store.workspaces();
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

    async fn target_of(&self, source: WorkspaceId, id: &str) -> Option<WorkspaceId> {
        let rows = self
            .inner
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
    pub async fn list_delegations(&self, source: WorkspaceId) -> Reply {
        let rows = match self
            .inner
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
}

/// A `delegation` activity row of `source` with its method and status; the rest empty.
fn delegation_row(
    source: WorkspaceId,
    target: Option<WorkspaceId>,
    method: &str,
    status: &str,
) -> NewActivity {
    NewActivity {
        source_id: Some(source),
        target_id: target,
        method: Some(method.into()),
        status: status.into(),
        ..NewActivity::new(source, "delegation")
    }
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
        item["response_preview"] = json!(truncate_dots(&text, 300));
    }
    item
}

fn truncate_dots(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
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

/// The text of an agent's answer: the first text part of `result.parts`, else of
/// `result.artifacts[*].parts`, else the whole answer as JSON text.
pub fn reply_text(answer: &Value) -> String {
    fn first_text(parts: Option<&Value>) -> Option<String> {
        parts?
            .as_array()?
            .iter()
            .find(|p| p.get("kind").or_else(|| p.get("type")) == Some(&json!("text")))
            .and_then(|p| p.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
    let result = answer.get("result");
    first_text(result.and_then(|r| r.get("parts")))
        .or_else(|| {
            result
                .and_then(|r| r.get("artifacts"))
                .and_then(Value::as_array)
                .and_then(|arts| arts.iter().find_map(|a| first_text(a.get("parts"))))
        })
        .unwrap_or_else(|| answer.to_string())
}
