//! Reading workspaces: the list, one workspace, and its state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::WorkspaceStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::{Query, WorkspacePath, flag};
use crate::routes::views;
use crate::state::AppState;

/// `GET /workspaces` (admin).
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let all = state
        .store
        .workspaces()
        .list()
        .await
        .or_internal("query failed")?;
    let layouts = state
        .store
        .layouts()
        .all()
        .await
        .or_internal("query failed")?;
    let items: Vec<Value> = all
        .iter()
        .map(|ws| views::list_item(ws, layouts.get(&ws.id).copied()))
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

/// `GET /workspaces/:id` query: `include_removed=true` shows a removed workspace.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GetQuery {
    #[serde(default, deserialize_with = "flag")]
    include_removed: bool,
}

/// `GET /workspaces/:id` (public).
pub(crate) async fn get(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<GetQuery>,
) -> ApiResult<Response> {
    let ws = state
        .store
        .workspaces()
        .get(id)
        .await
        .or_internal("query failed")?
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    if ws.status.is_removed() && !query.include_removed {
        return Err(ApiError::new(StatusCode::GONE, "workspace removed")
            .with("id", id.to_string())
            .with("removed_at", views::rfc3339(ws.updated_at))
            .with(
                "hint",
                "Regenerate workspace + token from the canvas → Tokens tab",
            ));
    }
    let layout = state
        .store
        .layouts()
        .get(id)
        .await
        .or_internal("query failed")?;
    Ok(ok_json(StatusCode::OK, views::detail(&ws, layout)))
}

/// `GET /workspaces/:id/state` (workspace auth).
pub(crate) async fn status(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let ws = state
        .store
        .workspaces()
        .get(id)
        .await
        .or_internal("query failed")?;
    Ok(match ws {
        None => ok_json(
            StatusCode::NOT_FOUND,
            json!({ "workspace_id": id, "deleted": true }),
        ),
        Some(ws) if ws.status.is_removed() => ok_json(
            StatusCode::NOT_FOUND,
            json!({ "workspace_id": id, "status": "removed", "deleted": true }),
        ),
        Some(ws) => ok_json(
            StatusCode::OK,
            json!({
                "workspace_id": id,
                "status": ws.status,
                "paused": ws.status == WorkspaceStatus::Paused,
                "deleted": false,
            }),
        ),
    })
}
