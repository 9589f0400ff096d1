//! HTTP handlers, one module per area of the API.

pub(crate) mod a2a;
pub(crate) mod activity;
pub(crate) mod admin;
pub(crate) mod agents;
pub(crate) mod approvals;
pub(crate) mod artifacts;
pub(crate) mod bundles;
pub(crate) mod canvas;
pub(crate) mod channels;
pub(crate) mod chat_files;
pub(crate) mod checkpoints;
pub(crate) mod discovery;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod github_token;
pub(crate) mod instructions;
pub(crate) mod kv_memory;
pub(crate) mod mcp;
pub(crate) mod memories;
pub(crate) mod memory_backup;
pub(crate) mod observe;
pub(crate) mod org;
mod org_create;
pub(crate) mod org_tokens;
pub(crate) mod plugin_allowlist;
pub(crate) mod plugins;
pub(crate) mod registry;
pub(crate) mod schedules;
pub(crate) mod secrets;
pub(crate) mod system;
pub(crate) mod team;
pub(crate) mod templates;
pub(crate) mod tokens;
pub(crate) mod webhooks;
pub(crate) mod workspaces;

mod body;
mod views;

/// The URL the caller reached this server at, from the request's `Host` (what an external
/// agent on the caller's side of the network can use).
pub(crate) fn request_origin(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{}", host.trim_end_matches('/'))
}

/// The workspace `id` when it exists and is not removed; else 404 `workspace not found`. A
/// store failure is a 500 with `failure` as its message.
pub(crate) async fn live_workspace(
    state: &crate::state::AppState,
    id: molecule_domain::WorkspaceId,
    failure: &str,
) -> crate::error::ApiResult<molecule_store::Workspace> {
    state
        .store
        .workspaces()
        .get(id)
        .await
        .map_err(|e| crate::error::ApiError::internal(failure, &e))?
        .filter(|w| !w.status.is_removed())
        .ok_or_else(|| crate::error::ApiError::not_found("workspace not found"))
}
