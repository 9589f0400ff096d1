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

/// The URL the caller reached this server at: `EXTERNAL_PLATFORM_URL` when set, else the
/// request's `X-Forwarded-Proto` (`http` or `https`, else `http`) and `X-Forwarded-Host`, else
/// `Host` (what an external agent on the caller's side of the network can use). A host that
/// is not a plain host name or address with an optional port is not echoed.
pub(crate) fn request_origin(
    http: &crate::middleware::HttpSettings,
    headers: &axum::http::HeaderMap,
) -> String {
    if let Some(url) = &http.external_platform_url {
        return url.clone();
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let plain_host = |h: &&str| {
        h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    };
    let proto = match first("x-forwarded-proto").map(str::to_ascii_lowercase) {
        Some(p) if p == "https" => "https",
        _ => "http",
    };
    let host = first("x-forwarded-host")
        .filter(plain_host)
        .or_else(|| first("host").filter(plain_host))
        .unwrap_or("localhost");
    format!("{proto}://{host}")
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
