//! `GET /admin/github-installation-token` (admin) and
//! `GET /workspaces/:id/github-installation-token` (workspace): one GitHub App installation
//! token for agents' git credential helpers ([`crate::github_app`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::error::{ApiError, ApiResult, ok_json};
use crate::extract::WorkspacePath;
use crate::github_app::{TokenError, format_expiry};
use crate::state::AppState;

/// `GET /admin/github-installation-token`: `{"token","expires_at"}`.
pub(crate) async fn admin_token(State(state): State<AppState>) -> ApiResult<Response> {
    installation_token(&state).await
}

/// `GET /workspaces/:id/github-installation-token`: the same token, for a workspace.
pub(crate) async fn workspace_token(
    State(state): State<AppState>,
    WorkspacePath(_): WorkspacePath,
) -> ApiResult<Response> {
    installation_token(&state).await
}

async fn installation_token(state: &AppState) -> ApiResult<Response> {
    let app = state
        .github_app
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no GitHub App configured"))?;
    match app.token().await {
        Ok(token) => Ok(ok_json(
            StatusCode::OK,
            json!({"token": token.token, "expires_at": format_expiry(token.expires_at)}),
        )),
        Err(TokenError::EmptyToken) => Err(ApiError::internal(
            "token refresh failed: empty token",
            &TokenError::EmptyToken,
        )),
        Err(e) => Err(ApiError::internal("token refresh failed", &e)),
    }
}
