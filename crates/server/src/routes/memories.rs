//! Scoped agent memories (`observability.md` §1.10): commit, recall, delete. Redaction, the
//! GLOBAL escape and full-text search are the store's (`molecule_store::Memories`); the
//! scope rules are the domain's (`molecule_domain::memory`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::memory::{self, MemoryScope};
use molecule_store::{Memory, NewActivity, NewMemory, RecallFilter, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::views::rfc3339;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, ok_list, status_body};
use crate::extract::{INVALID_BODY, JsonBody, Query, WorkspacePath, non_empty};
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct CommitBody {
    content: Option<String>,
    scope: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct RecallQuery {
    #[serde(default, deserialize_with = "non_empty")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    q: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    namespace: Option<String>,
    limit: Option<String>,
}

/// `POST /workspaces/:id/memories` `{content, scope, namespace?}` → 201 `{id, scope,
/// namespace}`. Nothing is written unless every rule passes.
pub(crate) async fn commit(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(body): JsonBody<CommitBody>,
) -> ApiResult<Response> {
    let (Some(content), Some(scope)) = (body.content, body.scope) else {
        return Err(ApiError::bad_request(INVALID_BODY));
    };
    let scope = memory::parse_scope(&scope)?;
    let namespace = memory::namespace(body.namespace.as_deref())?;
    memory::check_content(&content)?;
    let ws = super::live_workspace(&state, id, "failed to store memory").await?;
    memory::check_write(scope, ws.parent_id)?;
    let committed = state
        .store
        .memories()
        .commit(&NewMemory {
            workspace_id: id,
            content,
            scope,
            namespace: namespace.clone(),
            created_at: None,
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("workspace not found"),
            e => ApiError::internal("failed to store memory", &e),
        })?;
    if !committed.redacted.is_empty() {
        tracing::info!(workspace = %id, labels = ?committed.redacted, "memory: secrets redacted");
    }
    let stored = &committed.memory;
    if scope == MemoryScope::Global {
        audit_global_write(&state, stored).await;
    }
    Ok(ok_json(
        StatusCode::CREATED,
        json!({ "id": stored.id, "scope": scope, "namespace": namespace }),
    ))
}

/// The `memory_write_global` activity row of a GLOBAL write: the content's SHA-256, never the
/// text; not broadcast; best effort.
async fn audit_global_write(state: &AppState, stored: &Memory) {
    let digest = Sha256::digest(stored.content.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut row = NewActivity::new(stored.workspace_id, "memory_write_global");
    row.source_id = Some(stored.workspace_id);
    row.summary = Some(format!(
        "GLOBAL memory written: id={} namespace={}",
        stored.id, stored.namespace
    ));
    row.request_body = Some(json!({
        "memory_id": stored.id,
        "namespace": stored.namespace,
        "content_sha256": hex,
    }));
    if let Err(e) = state.store.activity().record(&row).await {
        tracing::warn!(error = %e, workspace = %stored.workspace_id, "memory: GLOBAL write audit row failed");
    }
}

/// One recalled memory as the API shows it.
fn item(m: &Memory) -> Value {
    json!({
        "id": m.id,
        "workspace_id": m.workspace_id,
        "content": m.read_content(),
        "scope": m.scope,
        "namespace": m.namespace,
        "created_at": rfc3339(m.created_at),
    })
}

/// `GET /workspaces/:id/memories?scope=&q=&namespace=&limit=`: what this workspace may see in
/// that scope (no scope: its own rows of every scope), best match first.
pub(crate) async fn recall(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<RecallQuery>,
) -> ApiResult<Response> {
    let ws = super::live_workspace(&state, id, "search failed").await?;
    let filter = RecallFilter {
        scope: query.scope.and_then(|s| s.parse().ok()),
        query: query
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty()),
        namespace: query.namespace,
        limit: memory::recall_limit(query.limit.as_deref()),
    };
    let rows = state
        .store
        .memories()
        .recall(id, ws.parent_id, &filter)
        .await
        .or_internal("search failed")?;
    Ok(ok_list(&rows, item))
}

/// `DELETE /workspaces/:id/memories/:memoryId`: only the owner's rows; anything else (another
/// workspace's memory, an unknown or malformed id) is 404.
pub(crate) async fn delete(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, memory_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("memory not found or not owned by this workspace");
    let memory_id: Uuid = memory_id.parse().map_err(|_| not_found())?;
    let deleted = state
        .store
        .memories()
        .delete(id, memory_id)
        .await
        .or_internal("delete failed")?;
    if !deleted {
        return Err(not_found());
    }
    Ok(ok_json(StatusCode::OK, status_body("deleted")))
}

/// Session-search items for this workspace's own memories (`kind: "memory"`), with their
/// times for merging with the activity items.
pub(crate) async fn session_items(
    state: &AppState,
    id: molecule_domain::WorkspaceId,
    q: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<(time::OffsetDateTime, Value)>> {
    let rows = state
        .store
        .memories()
        .search_own(id, q, limit)
        .await
        .or_internal("session search failed")?;
    Ok(rows
        .iter()
        .map(|m| {
            (
                m.created_at,
                json!({
                    "kind": "memory",
                    "id": m.id,
                    "workspace_id": m.workspace_id,
                    "label": m.scope,
                    "content": m.read_content(),
                    "method": "",
                    "status": "",
                    "created_at": rfc3339(m.created_at),
                }),
            )
        })
        .collect())
}
