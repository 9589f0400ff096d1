//! The canvas viewport (`observability.md` §1.14) and each workspace's config blob (§1.15).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_store::{StoreError, Viewport};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::WorkspacePath;
use crate::state::AppState;

/// The largest config patch, in bytes.
pub const MAX_CONFIG_PATCH: usize = 256 * 1024;

#[derive(Deserialize)]
struct ViewportBody {
    #[serde(default)]
    x: f64,
    #[serde(default)]
    y: f64,
    #[serde(default)]
    zoom: f64,
}

/// `GET /canvas/viewport`: the saved viewport, else (or on any error) `{x:0, y:0, zoom:1}`.
pub(crate) async fn viewport(State(state): State<AppState>) -> Response {
    let v = match state.store.canvas().viewport().await {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "viewport: cannot read");
            Viewport::default()
        }
    };
    ok_json(
        StatusCode::OK,
        json!({ "x": v.x, "y": v.y, "zoom": v.zoom }),
    )
}

/// `PUT /canvas/viewport` `{x, y, zoom}`: numbers (missing = 0); the zoom must be positive.
pub(crate) async fn save_viewport(
    State(state): State<AppState>,
    raw: Bytes,
) -> ApiResult<Response> {
    // JSON has no NaN or infinity, and serde_json refuses an out-of-range literal (1e999).
    let b: ViewportBody = body::json(&raw, "invalid viewport data")?;
    if b.zoom <= 0.0 {
        return Err(ApiError::bad_request("zoom must be greater than 0"));
    }
    state
        .store
        .canvas()
        .save_viewport(Viewport {
            x: b.x,
            y: b.y,
            zoom: b.zoom,
        })
        .await
        .or_internal("failed to save viewport")?;
    Ok(ok_json(StatusCode::OK, json!({ "status": "saved" })))
}

/// `GET /workspaces/:id/config`: `{"data": <blob>}` (`{}` when none).
pub(crate) async fn config(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let data = state
        .store
        .canvas()
        .config(id)
        .await
        .or_internal("query failed")?;
    Ok(ok_json(StatusCode::OK, json!({ "data": data })))
}

/// `PATCH /workspaces/:id/config`: a JSON object (at most [`MAX_CONFIG_PATCH`] bytes) whose
/// top-level keys replace the stored ones.
pub(crate) async fn patch_config(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    raw: Bytes,
) -> ApiResult<Response> {
    if raw.len() > MAX_CONFIG_PATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large or unreadable",
        ));
    }
    let value: Value =
        serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("invalid JSON"))?;
    let Value::Object(patch) = value else {
        return Err(ApiError::bad_request("config must be a JSON object"));
    };
    merge(&state, id, patch).await?;
    Ok(ok_json(StatusCode::OK, json!({ "status": "updated" })))
}

async fn merge(
    state: &AppState,
    id: molecule_domain::WorkspaceId,
    patch: Map<String, Value>,
) -> ApiResult<()> {
    match state.store.canvas().merge_config(id, patch).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(ApiError::not_found("workspace not found")),
        Err(e) => Err(ApiError::internal("failed to update config", &e)),
    }
}
