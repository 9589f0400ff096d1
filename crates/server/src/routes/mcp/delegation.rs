//! The bridge's delegation tools on the platform's own A2A proxy and delegation subsystem
//! (`molecule_a2a::Proxy`), as the spec's defect list asks: activity rows, the queue,
//! hibernation wake and the address policy all apply, and `check_task_status` finds the tasks
//! `delegate_task_async` started. Each function answers the tool's text or its error message.

use std::time::Duration;

use molecule_a2a::{Body, Caller, Message};
use molecule_domain::WorkspaceId;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::state::AppState;

/// The bound on a synchronous `delegate_task`.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest task text, in bytes.
pub(super) const TASK_MAX_BYTES: usize = 256 * 1024;

/// The required `workspace_id` and `task`, the target parsed and allowed for `caller`.
async fn target_of(
    state: &AppState,
    caller: WorkspaceId,
    workspace_id: Option<&str>,
    task: Option<&str>,
) -> Result<WorkspaceId, String> {
    let raw = workspace_id
        .filter(|w| !w.is_empty())
        .ok_or("workspace_id is required")?;
    if task.is_none_or(str::is_empty) {
        return Err(String::from("task is required"));
    }
    if task.is_some_and(|t| t.len() > TASK_MAX_BYTES) {
        return Err(format!("task must be <= {TASK_MAX_BYTES} bytes"));
    }
    let target: WorkspaceId = raw
        .parse()
        .map_err(|_| format!("workspace {raw} not found"))?;
    let denied = || format!("workspace {caller} is not authorised to communicate with {target}");
    if target == caller {
        return Err(denied());
    }
    match state
        .store
        .workspaces()
        .can_communicate(caller, target)
        .await
    {
        Ok(true) => Ok(target),
        Ok(false) => Err(denied()),
        Err(e) => {
            tracing::warn!(error = %e, "mcp: hierarchy check failed (denied)");
            Err(denied())
        }
    }
}

/// `delegate_task`: sends `task` to the target through the proxy and answers its reply text.
pub(super) async fn delegate(
    state: &AppState,
    caller: WorkspaceId,
    workspace_id: Option<&str>,
    task: Option<&str>,
) -> Result<String, String> {
    let target = target_of(state, caller, workspace_id, task).await?;
    let message_id = Uuid::new_v4().to_string();
    let body = json!({
        "jsonrpc": "2.0",
        "id": Uuid::new_v4().to_string(),
        "method": "message/send",
        "params": {"message": {
            "role": "user",
            "messageId": message_id,
            "parts": [{"kind": "text", "text": task.unwrap_or_default()}],
        }},
    });
    let reply = state
        .a2a
        .send(Message {
            target,
            caller: Caller::Workspace(caller),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            timeout: Some(SYNC_TIMEOUT),
            log: true,
        })
        .await;
    if reply.is_queued() {
        return Ok(reply.body.to_json().to_string());
    }
    if !reply.is_success() {
        let why = reply
            .error_message()
            .unwrap_or_else(|| format!("status {}", reply.status));
        return Err(format!("A2A call failed: {why}"));
    }
    Ok(match &reply.body {
        Body::Agent(bytes) => reply_text(bytes),
        other => reply_text(&other.to_bytes()),
    })
}

/// The text of an agent's JSON-RPC answer: its error, the first artifact's or message's first
/// text part, the JSON of `result`, or the raw body when it is not JSON.
fn reply_text(bytes: &[u8]) -> String {
    let Ok(answer) = serde_json::from_slice::<Value>(bytes) else {
        return String::from_utf8_lossy(bytes).into_owned();
    };
    if let Some(message) = answer.pointer("/error/message").and_then(Value::as_str) {
        return format!("[error] {message}");
    }
    let result = answer.get("result").cloned().unwrap_or(Value::Null);
    [
        "/artifacts/0/parts/0/text",
        "/message/parts/0/text",
        "/parts/0/text",
    ]
    .iter()
    .find_map(|p| result.pointer(p).and_then(Value::as_str))
    .map_or_else(|| result.to_string(), str::to_owned)
}

/// `delegate_task_async`: a delegation of the platform (`POST …/delegate`); answers its id.
pub(super) async fn delegate_async(
    state: &AppState,
    caller: WorkspaceId,
    workspace_id: Option<&str>,
    task: Option<&str>,
) -> Result<String, String> {
    let target = target_of(state, caller, workspace_id, task).await?;
    let raw = json!({"target_id": target, "task": task.unwrap_or_default()});
    let reply = state
        .a2a
        .delegate(caller, &serde_json::to_vec(&raw).unwrap_or_default())
        .await;
    let answer = reply.body.to_json();
    match answer.get("delegation_id").and_then(Value::as_str) {
        Some(id) if reply.is_success() => {
            Ok(json!({"task_id": id, "status": "dispatched", "target_id": target}).to_string())
        }
        _ => Err(format!(
            "delegation failed: {}",
            reply
                .error_message()
                .unwrap_or_else(|| format!("status {}", reply.status))
        )),
    }
}

/// `check_task_status`: the newest state of delegation `task_id` to the target.
pub(super) async fn status(
    state: &AppState,
    caller: WorkspaceId,
    workspace_id: Option<&str>,
    task_id: Option<&str>,
) -> Result<String, String> {
    let target = workspace_id
        .filter(|w| !w.is_empty())
        .ok_or("workspace_id is required")?;
    let task_id = task_id
        .filter(|t| !t.is_empty())
        .ok_or("task_id is required")?;
    let reply = state.a2a.list_delegations(caller).await;
    if !reply.is_success() {
        return Err(String::from("status lookup failed"));
    }
    let list = reply.body.to_json();
    let found = list.as_array().into_iter().flatten().find(|d| {
        d.get("delegation_id").and_then(Value::as_str) == Some(task_id)
            && d.get("target_id").and_then(Value::as_str) == Some(target)
    });
    let Some(d) = found else {
        return Ok(json!({"task_id": task_id, "status": "not_found",
                         "note": "task not tracked or not yet dispatched"})
        .to_string());
    };
    let mut out = json!({"task_id": task_id, "status": d["status"], "target_id": target});
    if let Some(e) = d.get("error") {
        out["error"] = e.clone();
    }
    if let Some(r) = d.get("response_preview") {
        out["result"] = r.clone();
    }
    Ok(serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string()))
}
