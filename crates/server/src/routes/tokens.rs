//! Workspace token routes (`auth-router.md` §4.1, §4.3).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::body;
use super::views::rfc3339;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ok_json};

/// Live tokens a workspace may hold at once.
const MAX_LIVE: i64 = 50;

/// `GET /workspaces/:id/tokens?limit&offset` (workspace auth).
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| (1..=200).contains(l))
        .unwrap_or(50);
    let offset = query
        .get("offset")
        .and_then(|o| o.parse::<i64>().ok())
        .filter(|o| *o >= 0)
        .unwrap_or(0);
    let tokens = state
        .store
        .tokens()
        .list(id, limit, offset)
        .await
        .map_err(|e| ApiError::internal("failed to list tokens", &e))?;
    let items: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "prefix": t.prefix,
                "created_at": rfc3339(t.created_at),
                "last_used_at": t.last_used_at.map(rfc3339),
            })
        })
        .collect();
    let count = items.len();
    Ok(ok_json(
        StatusCode::OK,
        json!({ "tokens": items, "count": count }),
    ))
}

/// `POST /workspaces/:id/tokens` (workspace auth).
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let tokens = state.store.tokens();
    let live = tokens
        .count_live(id)
        .await
        .map_err(|e| ApiError::internal("failed to create token", &e))?;
    if live >= MAX_LIVE {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "maximum 50 active tokens per workspace",
        ));
    }
    exists(&state, id).await?;
    let issued = tokens
        .issue(id)
        .await
        .map_err(|e| ApiError::internal("failed to create token", &e))?;
    Ok(ok_json(
        StatusCode::CREATED,
        json!({
            "auth_token": issued.token.expose(),
            "workspace_id": id,
            "message": "Save this token now — it cannot be retrieved again.",
        }),
    ))
}

/// `DELETE /workspaces/:id/tokens/:tokenId` (workspace auth).
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path((id, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let not_found = || ApiError::not_found("token not found or already revoked");
    let token_id: uuid::Uuid = token_id.parse().map_err(|_| not_found())?;
    let revoked = state
        .store
        .tokens()
        .revoke(id, token_id)
        .await
        .map_err(|e| ApiError::internal("failed to revoke token", &e))?;
    if revoked {
        Ok(ok_json(StatusCode::OK, json!({ "status": "revoked" })))
    } else {
        Err(not_found())
    }
}

/// `GET /admin/workspaces/:id/test-token`: only in dev mode or with
/// `MOLECULE_ENABLE_TEST_TOKENS=1`, and outside dev mode only for the admin token.
pub(crate) async fn test_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !state.security.test_tokens() {
        return Err(ApiError::not_found("not found"));
    }
    if !state.security.dev_mode() {
        let raw = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let presented = raw.strip_prefix("Bearer ").unwrap_or(raw).trim();
        if !state.security.is_admin_token(presented) {
            return Err(ApiError::unauthorized("admin auth required"));
        }
    }
    let id = body::workspace_id(&id)?;
    exists(&state, id).await?;
    let issued = state
        .store
        .tokens()
        .issue(id)
        .await
        .map_err(|e| ApiError::internal("token issue failed", &e))?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "auth_token": issued.token.expose(), "workspace_id": id }),
    ))
}

async fn exists(state: &AppState, id: molecule_domain::WorkspaceId) -> ApiResult<()> {
    state
        .store
        .workspaces()
        .get(id)
        .await
        .map_err(|e| ApiError::internal("lookup failed", &e))?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("workspace not found"))
}
