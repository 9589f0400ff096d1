//! A workspace's budget: `GET` and `PATCH /workspaces/:id/budget`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, OrInternal, ok_json, status_body};
use crate::extract::{JsonBody, WorkspacePath};
use crate::routes::views;
use crate::state::AppState;

/// `GET /workspaces/:id/budget` (workspace auth).
pub(crate) async fn budget(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let ws = crate::routes::live_workspace(&state, id, "query failed").await?;
    Ok(ok_json(StatusCode::OK, views::budget(&ws)))
}

/// `PATCH /workspaces/:id/budget` (admin).
pub(crate) async fn set_budget(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(map): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let limit = match map.get("budget_limit") {
        None => return Err(ApiError::bad_request("budget_limit field is required")),
        Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let v = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.trunc() as i64)
                })
                .ok_or_else(|| {
                    ApiError::bad_request("budget_limit must be an integer (USD cents) or null")
                })?;
            if v < 0 {
                return Err(ApiError::bad_request(
                    "budget_limit must be >= 0 (USD cents)",
                ));
            }
            Some(v)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "budget_limit must be an integer (USD cents) or null",
            ));
        }
    };
    let found = state
        .store
        .workspaces()
        .set_budget_limit(id, limit)
        .await
        .or_internal("update failed")?;
    if !found {
        return Err(ApiError::not_found("workspace not found"));
    }
    match state.store.workspaces().get(id).await {
        Ok(Some(ws)) => Ok(ok_json(StatusCode::OK, views::budget(&ws))),
        _ => Ok(ok_json(StatusCode::OK, status_body("updated"))),
    }
}
