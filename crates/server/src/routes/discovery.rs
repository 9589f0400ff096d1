//! Discovery: which peers a workspace may talk to, and where they are (`a2a.md` §1.7).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use molecule_domain::{DeliveryMode, Runtime, WorkspaceId, WorkspaceStatus};
use molecule_store::Workspace;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::{JsonBody, Query, WorkspacePath, non_empty};
use crate::state::AppState;

/// The caller named by `X-Workspace-ID`.
fn caller_of(headers: &HeaderMap) -> ApiResult<WorkspaceId> {
    let raw = headers
        .get("x-workspace-id")
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("X-Workspace-ID header is required"))?;
    raw.parse()
        .map_err(|_| ApiError::bad_request("invalid X-Workspace-ID"))
}

/// The address peers use to reach a workspace: an external agent's own URL (loopback
/// rewritten for callers inside containers), else the container's name on the platform
/// network.
fn peer_url(target: &Workspace, caller_external: bool) -> Option<String> {
    if target.runtime == Runtime::EXTERNAL {
        let url = target.url.clone().filter(|u| !u.is_empty())?;
        if caller_external {
            return Some(url);
        }
        return Some(
            url.replacen("127.0.0.1", "host.docker.internal", 1)
                .replacen("localhost", "host.docker.internal", 1),
        );
    }
    Some(format!("http://ws-{}:8000", target.id.short()))
}

/// `GET /registry/discover/:id` with `X-Workspace-ID` naming the caller.
pub(crate) async fn discover(
    State(state): State<AppState>,
    WorkspacePath(target): WorkspacePath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = caller_of(&headers)?;
    if !state.security.dev_mode() {
        auth::agent_credential(&state, &headers, caller, false).await?;
    }
    let workspaces = state.store.workspaces();
    let allowed = workspaces
        .can_communicate(caller, target)
        .await
        .or_internal("lookup failed")?;
    if !allowed {
        return Err(ApiError::forbidden(
            "not authorized to discover this workspace",
        ));
    }
    let ws = workspaces
        .get(target)
        .await
        .or_internal("lookup failed")?
        .filter(|w| !w.status.is_removed())
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    let caller_external = workspaces
        .get(caller)
        .await
        .or_internal("lookup failed")?
        .is_some_and(|c| c.runtime == Runtime::EXTERNAL);
    let live = matches!(
        ws.status,
        WorkspaceStatus::Online | WorkspaceStatus::Degraded
    );
    // A poll-mode agent (or an external one without a URL) has no address of its own: peers
    // reach it through the platform's A2A endpoint, which queues for it.
    if live && (ws.delivery_mode == DeliveryMode::Poll || peer_url(&ws, true).is_none()) {
        let base = if caller_external {
            super::request_origin(&state.http, &headers)
        } else {
            state
                .lifecycle
                .platform_url()
                .trim_end_matches('/')
                .to_owned()
        };
        return Ok(ok_json(
            StatusCode::OK,
            json!({ "id": ws.id, "url": format!("{base}/workspaces/{}/a2a", ws.id), "name": ws.name }),
        ));
    }
    let reachable = ws.runtime == Runtime::EXTERNAL || live;
    match peer_url(&ws, caller_external).filter(|_| reachable) {
        Some(url) => Ok(ok_json(
            StatusCode::OK,
            json!({ "id": ws.id, "url": url, "name": ws.name }),
        )),
        None => Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "workspace not available")
                .with("status", ws.status.as_str()),
        ),
    }
}

/// `GET /registry/:id/peers` query: `q` filters by name or role.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PeersQuery {
    #[serde(default, deserialize_with = "non_empty")]
    q: Option<String>,
}

/// `GET /registry/:id/peers?q=`: siblings (all other roots for a root), children, parent.
pub(crate) async fn peers(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<PeersQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !state.security.dev_mode() {
        auth::agent_credential(&state, &headers, id, false).await?;
    }
    let all = state
        .store
        .workspaces()
        .list()
        .await
        .or_internal("lookup failed")?;
    let me = all
        .iter()
        .find(|w| w.id == id)
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    let siblings = all
        .iter()
        .filter(|w| w.id != id && w.parent_id == me.parent_id);
    let children = all.iter().filter(|w| w.parent_id == Some(id));
    let parent = all.iter().filter(|w| Some(w.id) == me.parent_id);
    let needle = query
        .q
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    let items: Vec<Value> = siblings
        .chain(children)
        .chain(parent)
        .filter(|w| match &needle {
            None => true,
            Some(n) => {
                w.name.to_lowercase().contains(n)
                    || w.role
                        .as_deref()
                        .is_some_and(|r| r.to_lowercase().contains(n))
            }
        })
        .map(|w| {
            json!({
                "id": w.id,
                "name": w.name,
                "role": w.role.clone().filter(|r| !r.is_empty()),
                "tier": w.tier,
                "status": w.status,
                "agent_card": w.agent_card,
                "url": w.url.clone().unwrap_or_default(),
                "parent_id": w.parent_id,
                "active_tasks": w.active_tasks,
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CheckAccess {
    caller_id: Option<String>,
    target_id: Option<String>,
}

/// `POST /registry/check-access`: whether the communication rules let `caller_id` reach
/// `target_id`.
pub(crate) async fn check_access(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CheckAccess>,
) -> ApiResult<Response> {
    let parse = |v: Option<String>| -> ApiResult<WorkspaceId> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("invalid request body"))
    };
    let caller = parse(req.caller_id)?;
    let target = parse(req.target_id)?;
    let allowed = state
        .store
        .workspaces()
        .can_communicate(caller, target)
        .await
        .or_internal("lookup failed")?;
    Ok(ok_json(StatusCode::OK, json!({ "allowed": allowed })))
}
