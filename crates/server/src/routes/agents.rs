//! Agent model records (`observability.md` §1.20): which model a workspace's agent runs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Extensions, StatusCode};
use axum::response::Response;
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::AgentRefusal;
use serde::Deserialize;
use serde_json::json;

use super::body;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::{JsonBody, WorkspacePath};
use crate::state::AppState;

#[derive(Deserialize)]
struct ModelBody {
    model: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct MoveBody {
    target_workspace_id: Option<String>,
}

/// The `model` of a body: required, one line, at most 100 bytes.
fn model_of(raw: &Bytes) -> ApiResult<String> {
    let b: ModelBody = body::json(raw, "invalid request body")?;
    let model = b
        .model
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid request body"))?;
    molecule_domain::validation::model(&model)?;
    Ok(model)
}

/// `POST /workspaces/:id/agent` `{model}` → 201 `{agent_id, model}`.
pub(crate) async fn assign(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    raw: Bytes,
) -> ApiResult<Response> {
    let model = model_of(&raw)?;
    let agent_id = match state
        .store
        .agents()
        .assign(id, &model)
        .await
        .or_internal("failed to assign agent")?
    {
        Ok(agent_id) => agent_id,
        Err(AgentRefusal::NoWorkspace) => return Err(ApiError::not_found("workspace not found")),
        Err(_) => {
            return Err(ApiError::conflict(
                "workspace already has an active agent, use PATCH to replace",
            ));
        }
    };
    state
        .events
        .emit(
            EventType::AgentAssigned,
            Some(id),
            json!({ "agent_id": agent_id, "model": model }),
        )
        .await;
    Ok(ok_json(
        StatusCode::CREATED,
        json!({ "agent_id": agent_id, "model": model }),
    ))
}

/// `PATCH /workspaces/:id/agent` `{model}` → 200 `{agent_id, model, old_model}`.
pub(crate) async fn replace(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    raw: Bytes,
) -> ApiResult<Response> {
    let model = model_of(&raw)?;
    let (agent_id, old_model) = state
        .store
        .agents()
        .replace(id, &model)
        .await
        .or_internal("failed to replace agent")?
        .map_err(|_| ApiError::not_found("no active agent to replace"))?;
    state
        .events
        .emit(
            EventType::AgentReplaced,
            Some(id),
            json!({ "agent_id": agent_id, "model": model, "old_model": old_model }),
        )
        .await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "agent_id": agent_id, "model": model, "old_model": old_model }),
    ))
}

/// `DELETE /workspaces/:id/agent` → 200 `{"status":"removed","agent_id"}`.
pub(crate) async fn remove(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let agent = state
        .store
        .agents()
        .remove(id)
        .await
        .or_internal("failed to remove agent")?
        .map_err(|_| ApiError::not_found("no active agent to remove"))?;
    state
        .events
        .emit(
            EventType::AgentRemoved,
            Some(id),
            json!({ "agent_id": agent.id, "model": agent.model }),
        )
        .await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "removed", "agent_id": agent.id }),
    ))
}

/// `POST /workspaces/:id/agent/move` `{target_workspace_id}`, in one transaction. Admin or
/// org credentials only: the reference authorised only the source, so a workspace could push
/// its agent into any other.
pub(crate) async fn move_to(
    State(state): State<AppState>,
    WorkspacePath(from): WorkspacePath,
    extensions: Extensions,
    JsonBody(b): JsonBody<MoveBody>,
) -> ApiResult<Response> {
    let to: WorkspaceId = b
        .target_workspace_id
        .ok_or_else(|| ApiError::bad_request("invalid request body"))?
        .parse()
        .map_err(|_| ApiError::bad_request("invalid target_workspace_id"))?;
    if let Some(Caller::Workspace(_)) = extensions.get::<Caller>() {
        return Err(ApiError::forbidden(
            "moving an agent between workspaces needs admin or org credentials",
        ));
    }
    let agent = match state
        .store
        .agents()
        .move_to(from, to)
        .await
        .or_internal("failed to move agent")?
    {
        Ok(agent) => agent,
        Err(AgentRefusal::NoWorkspace) => {
            return Err(ApiError::not_found("target workspace not found"));
        }
        Err(AgentRefusal::AlreadyActive) => {
            return Err(ApiError::conflict(
                "target workspace already has an active agent",
            ));
        }
        Err(AgentRefusal::NoActive) => {
            return Err(ApiError::not_found("no active agent in source workspace"));
        }
    };
    let events = &state.events;
    events
        .emit(
            EventType::AgentMoved,
            Some(from),
            json!({ "agent_id": agent.id, "model": agent.model, "target_workspace_id": to }),
        )
        .await;
    events
        .emit(
            EventType::AgentMoved,
            Some(to),
            json!({ "agent_id": agent.id, "model": agent.model, "source_workspace_id": from }),
        )
        .await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "agent_id": agent.id, "model": agent.model, "from_workspace": from,
                "to_workspace": to }),
    ))
}
