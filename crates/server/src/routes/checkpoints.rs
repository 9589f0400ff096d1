//! Workflow checkpoints (`observability.md` §1.13): one row per (workflow, step), upserted as
//! a workflow runs, read back to resume it.

use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
use axum::response::Response;
use molecule_domain::WorkspaceId;
use molecule_store::{Checkpoint, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::rfc3339;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, ok_list};
use crate::extract::{INVALID_BODY, JsonBody, WorkspacePath};
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct UpsertBody {
    #[serde(default)]
    workflow_id: String,
    #[serde(default)]
    step_name: String,
    #[serde(default)]
    step_index: i64,
    #[serde(default)]
    payload: Value,
}

/// A workspace token of another workspace never reaches a checkpoint (the guard already
/// refuses it; kept as the reference's defensive check): 403 `workspace access denied`.
fn same_caller(extensions: &Extensions, id: WorkspaceId) -> ApiResult<()> {
    match extensions.get::<Caller>() {
        Some(Caller::Workspace(caller)) if *caller != id => {
            Err(ApiError::forbidden("workspace access denied"))
        }
        _ => Ok(()),
    }
}

fn item(c: &Checkpoint) -> Value {
    json!({
        "id": c.id,
        "workspace_id": c.workspace_id,
        "workflow_id": c.workflow_id,
        "step_name": c.step_name,
        "step_index": c.step_index,
        "completed_at": rfc3339(c.completed_at),
        "payload": c.payload,
    })
}

/// `POST /workspaces/:id/checkpoints` `{workflow_id, step_name, step_index?, payload?}` → 201
/// `{id, workspace_id, workflow_id, step_name}` (also when the step is recorded again).
pub(crate) async fn upsert(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    extensions: Extensions,
    JsonBody(body): JsonBody<UpsertBody>,
) -> ApiResult<Response> {
    same_caller(&extensions, id)?;
    let step_index = i32::try_from(body.step_index).ok();
    let (Some(step_index), false, false) = (
        step_index,
        body.workflow_id.is_empty(),
        body.step_name.is_empty(),
    ) else {
        return Err(ApiError::bad_request(INVALID_BODY));
    };
    let row = state
        .store
        .checkpoints()
        .upsert(
            id,
            &body.workflow_id,
            &body.step_name,
            step_index,
            &body.payload,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("workspace not found"),
            e => ApiError::internal("failed to upsert checkpoint", &e),
        })?;
    Ok(ok_json(
        StatusCode::CREATED,
        json!({ "id": row, "workspace_id": id, "workflow_id": body.workflow_id,
                "step_name": body.step_name }),
    ))
}

/// `GET /workspaces/:id/checkpoints/:wfid`: the workflow's steps, highest index first.
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    extensions: Extensions,
    Path((_, workflow)): Path<(String, String)>,
) -> ApiResult<Response> {
    same_caller(&extensions, id)?;
    let rows = state
        .store
        .checkpoints()
        .of_workflow(id, &workflow)
        .await
        .or_internal("failed to list checkpoints")?;
    if rows.is_empty() {
        return Err(ApiError::not_found("no checkpoints found for workflow"));
    }
    Ok(ok_list(&rows, item))
}

/// `GET /workspaces/:id/checkpoints/latest`: the most recently completed step.
pub(crate) async fn latest(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    extensions: Extensions,
) -> ApiResult<Response> {
    same_caller(&extensions, id)?;
    let row = state
        .store
        .checkpoints()
        .latest(id)
        .await
        .or_internal("failed to fetch latest checkpoint")?
        .ok_or_else(|| ApiError::not_found("no checkpoints found for workspace"))?;
    Ok(ok_json(StatusCode::OK, item(&row)))
}

/// `DELETE /workspaces/:id/checkpoints/:wfid` → `{deleted, workflow_id}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    extensions: Extensions,
    Path((_, workflow)): Path<(String, String)>,
) -> ApiResult<Response> {
    same_caller(&extensions, id)?;
    let n = state
        .store
        .checkpoints()
        .delete_workflow(id, &workflow)
        .await
        .or_internal("failed to delete checkpoints")?;
    if n == 0 {
        return Err(ApiError::not_found("no checkpoints found for workflow"));
    }
    Ok(ok_json(
        StatusCode::OK,
        json!({ "deleted": n, "workflow_id": workflow }),
    ))
}
