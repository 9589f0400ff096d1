//! Approvals (`observability.md` §1.9): an agent asks (`request_approval`), a person decides
//! once on the canvas. Decisions need a person's credentials (admin or org token): a
//! workspace cannot approve its own request (a defect of the reference).

use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
use axum::response::Response;
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{Approval, NewApproval, Undecided};
use serde::Deserialize;
use serde_json::{Value, json};

use super::views;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, ok_list};
use crate::extract::{JsonBody, WorkspacePath};
use crate::state::AppState;

/// A pending request older than this is denied as `auto-expired`.
pub const APPROVAL_TTL: time::Duration = time::Duration::minutes(10);

#[derive(Deserialize)]
pub(crate) struct Request {
    action: Option<String>,
    task_id: Option<String>,
    reason: Option<String>,
    context: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct Decision {
    decision: Option<String>,
    decided_by: Option<String>,
}

/// `POST /workspaces/:id/approvals` `{action, task_id?, reason?, context?}` → 201.
pub(crate) async fn create(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(req): JsonBody<Request>,
) -> ApiResult<Response> {
    let action = req
        .action
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid request body"))?;
    if req
        .context
        .as_ref()
        .is_some_and(|c| !c.is_object() && !c.is_null())
    {
        return Err(ApiError::bad_request("context must be a JSON object"));
    }
    let ws = super::live_workspace(&state, id, "query failed").await?;
    let new = NewApproval {
        action: action.clone(),
        task_id: req.task_id.clone(),
        reason: req.reason.clone(),
        context: req.context.filter(|c| !c.is_null()),
    };
    let approval_id = state
        .store
        .approvals()
        .create(id, &new)
        .await
        .or_internal("failed to create approval")?;
    state
        .events
        .emit(
            EventType::ApprovalRequested,
            Some(id),
            json!({ "approval_id": approval_id, "action": action, "reason": req.reason,
                    "task_id": req.task_id }),
        )
        .await;
    if let Some(parent) = ws.parent_id {
        state
            .events
            .emit(
                EventType::ApprovalEscalated,
                Some(parent),
                json!({ "approval_id": approval_id, "from_workspace_id": id, "action": action,
                        "reason": req.reason }),
            )
            .await;
    }
    Ok(ok_json(
        StatusCode::CREATED,
        json!({ "approval_id": approval_id, "status": "pending" }),
    ))
}

fn item(a: &Approval) -> Value {
    json!({
        "id": a.id,
        "task_id": a.task_id,
        "action": a.action,
        "reason": a.reason,
        "status": a.status,
        "decided_by": a.decided_by,
        "decided_at": a.decided_at.map(views::rfc3339),
        "created_at": views::rfc3339(a.created_at),
    })
}

/// `GET /workspaces/:id/approvals`: the 50 newest of the workspace, any status.
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let rows = state
        .store
        .approvals()
        .of_workspace(id)
        .await
        .or_internal("query failed")?;
    Ok(ok_list(&rows, item))
}

/// `GET /approvals/pending` (admin): expires pending requests older than [`APPROVAL_TTL`]
/// (each with its `APPROVAL_DENIED` event), then the 50 newest pending ones with their
/// workspace's name.
pub(crate) async fn pending(State(state): State<AppState>) -> ApiResult<Response> {
    let approvals = state.store.approvals();
    let cutoff = time::OffsetDateTime::now_utc() - APPROVAL_TTL;
    match approvals.expire(cutoff).await {
        Ok(expired) => {
            for a in expired {
                if let Some(ws) = a.workspace_id {
                    decided_event(&state, ws, &a.id.to_string(), "denied", "auto-expired").await;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "approvals: cannot expire old requests"),
    }
    let rows = approvals.pending().await.or_internal("query failed")?;
    let items: Vec<Value> = rows
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "workspace_id": a.workspace_id,
                "workspace_name": a.workspace_name,
                "action": a.action,
                "reason": a.reason,
                "status": a.status,
                "created_at": views::rfc3339(a.created_at),
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

async fn decided_event(state: &AppState, ws: WorkspaceId, id: &str, decision: &str, by: &str) {
    let event = if decision == "approved" {
        EventType::ApprovalApproved
    } else {
        EventType::ApprovalDenied
    };
    state
        .events
        .emit(
            event,
            Some(ws),
            json!({ "approval_id": id, "decision": decision, "decided_by": by }),
        )
        .await;
}

/// `POST /workspaces/:id/approvals/:approvalId/decide` `{decision, decided_by?}`: once; a
/// second decision is 409 and changes nothing.
pub(crate) async fn decide(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, approval_id)): Path<(String, String)>,
    extensions: Extensions,
    JsonBody(req): JsonBody<Decision>,
) -> ApiResult<Response> {
    if matches!(extensions.get::<Caller>(), Some(Caller::Workspace(_))) {
        return Err(ApiError::forbidden(
            "approvals are decided by a person (admin or org credentials), not by a workspace",
        ));
    }
    let decision = req
        .decision
        .ok_or_else(|| ApiError::bad_request("invalid request body"))?;
    if decision != "approved" && decision != "denied" {
        return Err(ApiError::bad_request(
            "decision must be 'approved' or 'denied'",
        ));
    }
    let decided_by = req
        .decided_by
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "human".into());
    let not_found = || ApiError::not_found("approval not found");
    let approval: uuid::Uuid = approval_id.parse().map_err(|_| not_found())?;
    match state
        .store
        .approvals()
        .decide(id, approval, &decision, &decided_by)
        .await
        .or_internal("failed to update")?
    {
        Ok(()) => {}
        Err(Undecided::NotFound) => return Err(not_found()),
        Err(Undecided::AlreadyDecided) => {
            return Err(ApiError::conflict("approval already decided"));
        }
    }
    decided_event(&state, id, &approval_id, &decision, &decided_by).await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": decision, "approval_id": approval_id }),
    ))
}
