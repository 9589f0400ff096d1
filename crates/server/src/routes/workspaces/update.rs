//! `PATCH /workspaces/:id`: every field is checked first, then all are applied at once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::{Runtime, Tier, WorkspaceId, validation};
use molecule_store::{StoreError, WorkspaceUpdate};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, ok_json, status_body};
use crate::extract::{JsonBody, WorkspacePath};
use crate::state::AppState;

fn string_field(map: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// Reads a nullable field: absent → `None`, null → `Some(None)`.
fn nullable<T>(
    map: &Map<String, Value>,
    key: &str,
    parse: impl Fn(&Value) -> Option<T>,
    message: &str,
) -> ApiResult<Option<Option<T>>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => parse(v)
            .map(|t| Some(Some(t)))
            .ok_or_else(|| ApiError::bad_request(message)),
    }
}

/// `PATCH /workspaces/:id` (workspace auth): every field is checked first, then all are
/// applied in one transaction.
pub(crate) async fn update(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(map): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let mut changes = WorkspaceUpdate::default();
    if let Some(name) = string_field(&map, "name")? {
        validation::name(&name)?;
        changes.name = Some(name);
    }
    if let Some(role) = nullable(
        &map,
        "role",
        |v| v.as_str().map(str::to_owned),
        "role must be a string",
    )? {
        if let Some(r) = &role {
            validation::role(r)?;
        }
        changes.role = Some(role);
    }
    if let Some(runtime) = string_field(&map, "runtime")? {
        let rt = Runtime::new(runtime).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !Runtime::BUILTIN.contains(&rt.as_str()) {
            return Err(ApiError::bad_request(format!("unknown runtime \"{rt}\"")));
        }
        changes.runtime = Some(rt);
    }
    if let Some(tier) = map.get("tier") {
        let t = tier
            .as_i64()
            .and_then(|n| Tier::try_from(n).ok())
            .ok_or_else(|| ApiError::bad_request("tier must be between 1 and 4"))?;
        changes.tier = Some(t);
    }
    if let Some(parent) = nullable(
        &map,
        "parent_id",
        |v| v.as_str().and_then(|s| s.parse::<WorkspaceId>().ok()),
        "invalid parent_id",
    )? {
        changes.parent_id = Some(parent);
    }
    let dir_present = map.contains_key("workspace_dir");
    if let Some(dir) = nullable(
        &map,
        "workspace_dir",
        |v| v.as_str().map(str::to_owned),
        "invalid workspace directory",
    )? {
        let dir = dir.filter(|d| !d.is_empty());
        if let Some(d) = &dir {
            validation::workspace_dir(d)?;
        }
        changes.workspace_dir = Some(dir);
    }
    if let Some(minutes) = nullable(
        &map,
        "hibernation_idle_minutes",
        |v| {
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n >= 0)
        },
        "hibernation_idle_minutes must be a whole number >= 0 or null",
    )? {
        changes.hibernation_idle_minutes = Some(minutes.filter(|m| *m > 0));
    }
    if let Some(collapsed) = map.get("collapsed") {
        changes.collapsed = Some(
            collapsed
                .as_bool()
                .ok_or_else(|| ApiError::bad_request("collapsed must be a boolean"))?,
        );
    }
    match (map.get("x"), map.get("y")) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else {
                return Err(ApiError::bad_request("x and y must be numbers"));
            };
            changes.position = Some((x, y));
        }
        _ => return Err(ApiError::bad_request("x and y must be given together")),
    }
    match state.store.workspaces().update(id, changes).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(ApiError::not_found("workspace not found")),
        Err(StoreError::ParentNotFound) => {
            return Err(ApiError::bad_request("parent workspace not found"));
        }
        Err(StoreError::ParentCycle) => {
            return Err(ApiError::bad_request("parent_id would create a cycle"));
        }
        Err(e) => return Err(ApiError::internal("update failed", &e)),
    }
    let mut reply = status_body("updated");
    if dir_present && let Some(obj) = reply.as_object_mut() {
        obj.insert("needs_restart".to_owned(), Value::Bool(true));
    }
    Ok(ok_json(StatusCode::OK, reply))
}
