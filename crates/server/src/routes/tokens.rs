//! Workspace token routes (`auth-router.md` §4.1, §4.3).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::rfc3339;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::{Query, WorkspacePath, non_empty};
use crate::state::AppState;

/// Live tokens a workspace may hold at once.
const MAX_LIVE: i64 = 50;

/// `GET /workspaces/:id/tokens` query: `limit` 1–200 (default 50), `offset` ≥ 0.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default, deserialize_with = "non_empty")]
    limit: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    offset: Option<String>,
}

/// `GET /workspaces/:id/tokens?limit&offset` (workspace auth).
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    let limit = query
        .limit
        .as_deref()
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| (1..=200).contains(l))
        .unwrap_or(50);
    let offset = query
        .offset
        .as_deref()
        .and_then(|o| o.parse::<i64>().ok())
        .filter(|o| *o >= 0)
        .unwrap_or(0);
    let tokens = state
        .store
        .tokens()
        .list(id, limit, offset)
        .await
        .or_internal("failed to list tokens")?;
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
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let tokens = state.store.tokens();
    let live = tokens
        .count_live(id)
        .await
        .or_internal("failed to create token")?;
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
        .or_internal("failed to create token")?;
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
    WorkspacePath(id): WorkspacePath,
    Path((_, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("token not found or already revoked");
    let token_id: uuid::Uuid = token_id.parse().map_err(|_| not_found())?;
    let revoked = state
        .store
        .tokens()
        .revoke(id, token_id)
        .await
        .or_internal("failed to revoke token")?;
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
    WorkspacePath(id): WorkspacePath,
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
    exists(&state, id).await?;
    let issued = state
        .store
        .tokens()
        .issue(id)
        .await
        .or_internal("token issue failed")?;
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
        .or_internal("lookup failed")?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("workspace not found"))
}
