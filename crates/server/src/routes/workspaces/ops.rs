//! Operator operations on one workspace through the lifecycle service: remove, restart, pause,
//! resume, hibernate, its console output, and the bootstrap watcher's failure report.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::{EventType, WorkspaceStatus};
use molecule_store::{StatusChange, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, OrInternal, ok_json, status_body};
use crate::extract::{JsonBody, Query, WorkspacePath, flag};
use crate::lifecycle::{LifecycleError, RestartOutcome};
use crate::routes::body;
use crate::state::AppState;
use crate::templates::restart;
use crate::templates::source::SourceError;

/// `DELETE /workspaces/:id` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RemoveQuery {
    /// Cascade to sub-workspaces.
    #[serde(default, deserialize_with = "flag")]
    confirm: bool,
    /// Also delete the rows and volumes, not only mark removed.
    #[serde(default, deserialize_with = "flag")]
    purge: bool,
}

/// `POST /workspaces/:id/restart` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RestartQuery {
    /// Start the agent with a fresh session.
    #[serde(default, deserialize_with = "flag")]
    reset: bool,
}

/// `POST /workspaces/:id/hibernate` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct HibernateQuery {
    /// Hibernate even with active tasks.
    #[serde(default, deserialize_with = "flag")]
    force: bool,
}

/// `DELETE /workspaces/:id?confirm=true&purge=true` (admin).
pub(crate) async fn remove(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<RemoveQuery>,
) -> ApiResult<Response> {
    let RemoveQuery { confirm, purge } = query;
    let children = state
        .store
        .workspaces()
        .children(id)
        .await
        .or_internal("failed to check children")?;
    if !children.is_empty() && !confirm {
        let list: Vec<Value> = children
            .iter()
            .map(|c| json!({ "id": c.id, "name": c.name }))
            .collect();
        return Ok(ok_json(
            StatusCode::CONFLICT,
            json!({
                "status": "confirmation_required",
                "message": "This workspace has sub-workspaces. Delete with ?confirm=true to cascade delete.",
                "children": list,
                "children_count": children.len(),
            }),
        ));
    }
    let outcome = state.lifecycle.remove(id, purge).await?;
    if outcome.stop_failures > 0 {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "workspace marked removed, but {} stop call(s) failed — please retry",
                outcome.stop_failures
            ),
        )
        .with("removed_count", outcome.cascade_deleted + 1)
        .with("stop_failures", outcome.stop_failures));
    }
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "status": if purge { "purged" } else { "removed" },
            "cascade_deleted": outcome.cascade_deleted,
        }),
    ))
}

/// `POST /workspaces/:id/restart` (workspace auth).
pub(crate) async fn restart(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<RestartQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    // The body is optional and its parse errors are ignored, as in the reference.
    let options = body::object(&body, "invalid request body").unwrap_or_default();
    let reset = query.reset || options.get("reset").and_then(Value::as_bool) == Some(true);
    let (files, config_dir) = restart_source(&state, id, &options).await?;
    match state.lifecycle.restart_with_files(id, files).await? {
        RestartOutcome::External => Ok(ok_json(
            StatusCode::OK,
            json!({
                "status": "noop",
                "runtime": "external",
                "message": "external workspaces are operator-driven — restart your local poller; platform has nothing to restart",
            }),
        )),
        RestartOutcome::Restarting => Ok(ok_json(
            StatusCode::OK,
            json!({ "status": "provisioning", "config_dir": config_dir, "reset_session": reset }),
        )),
    }
}

/// The files a restart applies and the `config_dir` label it answers (spec lifecycle §7.4):
/// nothing and `existing-volume` unless the body asks for a template.
async fn restart_source(
    state: &AppState,
    id: molecule_domain::WorkspaceId,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<(Vec<(molecule_domain::RelPath, Vec<u8>)>, String)> {
    let options = restart::RestartOptions::from_body(body);
    if options == restart::RestartOptions::default() {
        return Ok((Vec::new(), restart::EXISTING_VOLUME.to_owned()));
    }
    let ws = crate::routes::live_workspace(state, id, "lookup failed").await?;
    let configs = state.configs_dir.clone();
    let read = tokio::task::spawn_blocking(move || {
        restart::files(
            configs.as_deref().map(|c| c.as_path()),
            &ws.name,
            &ws.runtime,
            &options,
        )
    })
    .await;
    match read {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(SourceError::TooLarge)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template too large",
        )),
        Ok(Err(e)) => Err(ApiError::internal("failed to read template", &e)),
        Err(e) => Err(ApiError::internal("failed to read template", &e)),
    }
}

/// `POST /workspaces/:id/pause` (workspace auth).
pub(crate) async fn pause(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let outcome = state.lifecycle.pause(id).await.map_err(|e| match e {
        LifecycleError::NotFound => ApiError::not_found("workspace not found or already paused"),
        other => other.into(),
    })?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "paused", "paused_count": outcome.count }),
    ))
}

/// `POST /workspaces/:id/resume` (workspace auth).
pub(crate) async fn resume(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let outcome = state.lifecycle.resume(id).await.map_err(|e| match e {
        LifecycleError::NotFound => ApiError::not_found("workspace not found or not paused"),
        other => other.into(),
    })?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "provisioning", "resumed_count": outcome.count }),
    ))
}

/// `POST /workspaces/:id/hibernate?force=true` (workspace auth).
pub(crate) async fn hibernate(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<HibernateQuery>,
) -> ApiResult<Response> {
    let force = query.force;
    state
        .lifecycle
        .hibernate(id, force)
        .await
        .map_err(|e| match e {
            LifecycleError::NotFound => ApiError::not_found(
                "workspace not found or not in a hibernatable state (must be online or degraded)",
            ),
            other => other.into(),
        })?;
    Ok(ok_json(StatusCode::OK, status_body("hibernated")))
}

/// `GET /workspaces/:id/console` (admin): the console output of the workspace's compute.
pub(crate) async fn console(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    match state.lifecycle.console(id).await.map_err(|e| match e {
        LifecycleError::BackendFailed(message) => ApiError::new(StatusCode::BAD_GATEWAY, message),
        other => other.into(),
    })? {
        Some(output) => Ok(ok_json(StatusCode::OK, json!({ "output": output }))),
        None => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "console output unavailable on this deployment",
        )),
    }
}

/// The bootstrap watcher's failure report.
#[derive(Deserialize)]
pub(crate) struct Report {
    #[serde(default)]
    error: String,
    #[serde(default)]
    log_tail: String,
}

/// `POST /admin/workspaces/:id/bootstrap-failed` (admin).
pub(crate) async fn bootstrap_failed(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(report): JsonBody<Report>,
) -> ApiResult<Response> {
    const CAP: usize = 8192;
    let mut tail = report.log_tail;
    if tail.len() > CAP {
        let mut start = tail.len() - CAP;
        while !tail.is_char_boundary(start) {
            start += 1;
        }
        tail = format!("...(truncated)...\n{}", &tail[start..]);
    }
    let error = match report.error.trim() {
        "" => "bootstrap failed — see log_tail".to_owned(),
        e => e.to_owned(),
    };
    let mut reason = format!("{error}\n\n{tail}");
    if reason.len() > CAP {
        let mut end = CAP;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    let result = state
        .store
        .workspaces()
        .transition_with(
            id,
            WorkspaceStatus::Failed,
            Some(&[WorkspaceStatus::Provisioning]),
            &StatusChange::failed(reason),
        )
        .await;
    match result {
        Ok(_) => {
            state
                .events
                .emit(
                    EventType::WorkspaceProvisionFailed,
                    Some(id),
                    json!({ "error": error, "log_tail": tail, "source": "bootstrap_watcher" }),
                )
                .await;
            Ok(ok_json(StatusCode::OK, json!({ "ok": true })))
        }
        Err(StoreError::NotFound | StoreError::UnexpectedStatus { .. }) => Ok(ok_json(
            StatusCode::OK,
            json!({ "ok": true, "no_change": true }),
        )),
        Err(e) => Err(ApiError::internal("db update failed", &e)),
    }
}
