//! The per-org plugin allowlist (spec templates §1.6): `GET`/`PUT /orgs/:id/plugins/allowlist`
//! and the install check. An org is a root workspace; a workspace's org is the root of its
//! tree (every level up, not only the parent). An org token may only manage its own org.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::WorkspaceId;
use molecule_domain::paths::plugin_name;
use molecule_store::Workspace;
use serde::Deserialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ok_json};
use crate::state::AppState;

/// How many levels up an org lookup goes.
const MAX_HOPS: usize = 32;

/// The org (root workspace) of `ws`.
async fn org_of(
    state: &AppState,
    ws: &Workspace,
) -> Result<WorkspaceId, molecule_store::StoreError> {
    let mut current = ws.clone();
    for _ in 0..MAX_HOPS {
        let Some(parent) = current.parent_id else {
            break;
        };
        match state.store.workspaces().get(parent).await? {
            Some(p) => current = p,
            None => break,
        }
    }
    Ok(current.id)
}

/// Whether `ws`'s org lets plugin `name` be installed. Database errors allow (fail open,
/// logged), as the spec says.
pub(crate) async fn allowed(state: &AppState, ws: &Workspace, name: &str) -> bool {
    let org = match org_of(state, ws).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(workspace = %ws.id, error = %e, "allowlist: org lookup failed; allowing");
            return true;
        }
    };
    match state.store.plugin_allowlist().allows(org, name).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(org = %org, error = %e, "allowlist: lookup failed; allowing");
            true
        }
    }
}

/// The org in the path, after the existence and ownership checks.
async fn checked_org(
    state: &AppState,
    raw: &str,
    caller: Option<&Caller>,
) -> ApiResult<WorkspaceId> {
    let id: WorkspaceId = raw
        .parse()
        .map_err(|_| ApiError::not_found("org not found"))?;
    let found = state
        .store
        .workspaces()
        .get(id)
        .await
        .map_err(|e| ApiError::internal("failed to verify org", &e))?
        .filter(|w| !w.status.is_removed());
    // Ownership first for org tokens, so a foreign token learns nothing about existence.
    if let Some(Caller::Org(identity)) = caller
        && identity.org_id != Some(id.as_uuid())
    {
        return Err(ApiError::forbidden("org access denied"));
    }
    found
        .map(|w| w.id)
        .ok_or_else(|| ApiError::not_found("org not found"))
}

/// `GET /orgs/:id/plugins/allowlist` (admin).
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
) -> ApiResult<Response> {
    let org = checked_org(&state, &id, caller.as_deref()).await?;
    let rows = state
        .store
        .plugin_allowlist()
        .list(org)
        .await
        .map_err(|e| ApiError::internal("failed to fetch allowlist", &e))?;
    let plugins: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "plugin_name": r.plugin_name,
                "enabled_by": r.enabled_by,
                "enabled_at": r.enabled_at.format(&Rfc3339).unwrap_or_default(),
            })
        })
        .collect();
    Ok(ok_json(
        StatusCode::OK,
        json!({ "org_id": org, "allow_all": plugins.is_empty(), "plugins": plugins }),
    ))
}

#[derive(Debug, Deserialize)]
struct PutRequest {
    plugins: Vec<String>,
    #[serde(default)]
    enabled_by: String,
}

/// `PUT /orgs/:id/plugins/allowlist` `{plugins, enabled_by}` (admin).
pub(crate) async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: PutRequest = super::body::json(&body, "invalid request body")?;
    if req.enabled_by.trim().is_empty() {
        return Err(ApiError::bad_request("enabled_by is required"));
    }
    for n in &req.plugins {
        if let Err(e) = plugin_name(n) {
            return Err(ApiError::bad_request("invalid plugin name")
                .with("plugin_name", n.clone())
                .with("detail", e.to_string()));
        }
    }
    let org = checked_org(&state, &id, caller.as_deref()).await?;
    state
        .store
        .plugin_allowlist()
        .replace(org, &req.plugins, req.enabled_by.trim())
        .await
        .map_err(|e| ApiError::internal("failed to update allowlist", &e))?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "org_id": org, "plugins": req.plugins, "allow_all": req.plugins.is_empty() }),
    ))
}
