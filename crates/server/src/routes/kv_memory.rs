//! Key/value memory (`observability.md` §1.11): JSON values per workspace and key, with a TTL
//! and optimistic locking (`if_match_version`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::memory::{KV_KEY_MAX_BYTES, KV_VALUE_MAX_BYTES};
use molecule_store::{KvEntry, KvWrite, StoreError};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use super::views::rfc3339;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, ok_list, status_body};
use crate::extract::{JsonBody, WorkspacePath};
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct SetBody {
    #[serde(default)]
    key: String,
    /// `Some(Value::Null)` for an explicit `null`; `None` when absent.
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    ttl_seconds: Option<i64>,
    if_match_version: Option<i64>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn item(e: &KvEntry) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), json!(e.key));
    m.insert("value".into(), e.value.clone());
    m.insert("version".into(), json!(e.version));
    if let Some(t) = e.expires_at {
        m.insert("expires_at".into(), json!(rfc3339(t)));
    }
    m.insert("updated_at".into(), json!(rfc3339(e.updated_at)));
    Value::Object(m)
}

/// `GET /workspaces/:id/memory`: the unexpired entries, by key.
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let rows = state
        .store
        .kv_memory()
        .list(id)
        .await
        .or_internal("query failed")?;
    Ok(ok_list(&rows, item))
}

/// `GET /workspaces/:id/memory/:key`; missing or expired → 404 `key not found`.
pub(crate) async fn get(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let entry = state
        .store
        .kv_memory()
        .get(id, &key)
        .await
        .or_internal("query failed")?
        .ok_or_else(|| ApiError::not_found("key not found"))?;
    Ok(ok_json(StatusCode::OK, item(&entry)))
}

/// `POST /workspaces/:id/memory` `{key, value, ttl_seconds?, if_match_version?}` → 200
/// `{status: "ok", key, version}`; a version mismatch is 409 with `expected_version` and
/// `current_version`.
pub(crate) async fn set(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(body): JsonBody<SetBody>,
) -> ApiResult<Response> {
    if body.key.is_empty() {
        return Err(ApiError::bad_request("key is required"));
    }
    if body.key.len() > KV_KEY_MAX_BYTES {
        return Err(ApiError::bad_request(format!(
            "key must be <= {KV_KEY_MAX_BYTES} characters"
        )));
    }
    let value = body
        .value
        .ok_or_else(|| ApiError::bad_request("value is required"))?;
    let size = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
    if size > KV_VALUE_MAX_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("value must be <= {KV_VALUE_MAX_BYTES} bytes"),
        ));
    }
    let expires_at = match body.ttl_seconds {
        None => None,
        Some(ttl) => Some(
            time::OffsetDateTime::now_utc()
                .checked_add(time::Duration::seconds(ttl))
                .filter(|t| (1..=9999).contains(&t.year()))
                .ok_or_else(|| ApiError::bad_request("ttl_seconds out of range"))?,
        ),
    };
    let written = state
        .store
        .kv_memory()
        .set(id, &body.key, &value, expires_at, body.if_match_version)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("workspace not found"),
            e => ApiError::internal("failed to set memory", &e),
        })?;
    match (written, body.if_match_version) {
        (KvWrite::Written(version), _) => Ok(ok_json(
            StatusCode::OK,
            json!({ "status": "ok", "key": body.key, "version": version }),
        )),
        (KvWrite::Mismatch(None), expected) => Err(ApiError::conflict(
            "if_match_version mismatch: key does not exist",
        )
        .with("expected_version", expected)
        .with("current_version", Value::Null)),
        (KvWrite::Mismatch(Some(current)), expected) => {
            Err(ApiError::conflict("if_match_version mismatch")
                .with("expected_version", expected)
                .with("current_version", current))
        }
    }
}

/// `DELETE /workspaces/:id/memory/:key`: 200 whether or not it existed.
pub(crate) async fn delete(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    state
        .store
        .kv_memory()
        .delete(id, &key)
        .await
        .or_internal("failed to delete")?;
    Ok(ok_json(StatusCode::OK, status_body("deleted")))
}
