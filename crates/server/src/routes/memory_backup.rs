//! Memory backup (`observability.md` §1.12, admin): every agent memory out, with its
//! workspace's name and secrets redacted, and back in, idempotently.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_store::ImportEntry;
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::rfc3339;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::state::AppState;

/// One entry of an import body; missing fields are empty (the entry is then skipped or
/// counted as an error).
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    content: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    workspace_name: String,
}

/// `GET /admin/memories/export`: `[{id, content, scope, namespace, created_at,
/// workspace_name}]`, oldest first.
pub(crate) async fn export(State(state): State<AppState>) -> ApiResult<Response> {
    let rows = state
        .store
        .memories()
        .export()
        .await
        .or_internal("export query failed")?;
    let items: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "content": m.content,
                "scope": m.scope,
                "namespace": m.namespace,
                "created_at": rfc3339(m.created_at),
                "workspace_name": m.workspace_name,
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

/// `POST /admin/memories/import` (an export's array) → `{imported, skipped, errors, total}`.
/// Entries go through the commit rules and redaction; an entry already stored is skipped.
pub(crate) async fn import(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let entries: Vec<Entry> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let entries: Vec<ImportEntry> = entries
        .into_iter()
        .map(|e| ImportEntry {
            content: e.content,
            scope: e.scope,
            namespace: e.namespace,
            created_at: e.created_at,
            workspace_name: e.workspace_name,
        })
        .collect();
    let report = state.store.memories().import(&entries).await;
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "imported": report.imported,
            "skipped": report.skipped,
            "errors": report.errors,
            "total": entries.len(),
        }),
    ))
}
