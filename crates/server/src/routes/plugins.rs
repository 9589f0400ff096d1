//! Plugins (spec templates §1.5): the registry (`GET /plugins`, `/plugins/sources`), a
//! workspace's installed and available plugins and their compatibility, install (the stage
//! pipeline, the org allowlist checked before any fetch, delivery through the lifecycle
//! service's container access, then a restart), uninstall, and the `.tar.gz` download.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use molecule_domain::paths::plugin_name;
use molecule_domain::{FileRoot, RelPath, Runtime, WorkspaceId};
use molecule_store::Workspace;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult, ok_json};
use crate::extract::{Query, WorkspacePath};
use crate::lifecycle::{AccessError, ContainerState};
use crate::plugins::manifest::{PluginInfo, registry};
use crate::plugins::source::SCHEMES;
use crate::plugins::stage::{expected_name, resolve_and_stage};
use crate::plugins::{archive, claude_md};
use crate::state::AppState;

/// The 503 of a stopped workspace.
const NOT_RUNNING: &str = "workspace container not running";
/// The 503 when the backend could not tell.
const TRANSIENT: &str = "could not determine workspace container state; retry";

#[derive(Debug, Deserialize)]
pub(crate) struct RuntimeQuery {
    #[serde(default)]
    runtime: String,
}

/// `GET /plugins?runtime=` (public).
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<RuntimeQuery>,
) -> ApiResult<Response> {
    let dir = state.catalog.plugins_dir.clone();
    let runtime = Some(q.runtime).filter(|r| !r.trim().is_empty());
    let plugins = tokio::task::spawn_blocking(move || registry(&dir, runtime.as_deref()))
        .await
        .map_err(|e| ApiError::internal("failed to list plugins", &e))?;
    Ok(ok_json(StatusCode::OK, json!(plugins)))
}

/// `GET /plugins/sources` (public).
pub(crate) async fn sources() -> Response {
    ok_json(StatusCode::OK, json!({ "schemes": SCHEMES }))
}

/// `GET /workspaces/:id/plugins/available`.
pub(crate) async fn available(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let runtime = state
        .store
        .workspaces()
        .get(id)
        .await
        .ok()
        .flatten()
        .map(|w| w.runtime);
    let dir = state.catalog.plugins_dir.clone();
    let plugins = tokio::task::spawn_blocking(move || registry(&dir, runtime.as_deref()))
        .await
        .map_err(|e| ApiError::internal("failed to list plugins", &e))?;
    Ok(ok_json(StatusCode::OK, json!(plugins)))
}

async fn workspace(state: &AppState, id: WorkspaceId) -> ApiResult<Workspace> {
    super::live_workspace(state, id, "failed to read workspace").await
}

fn rel(path: &str) -> ApiResult<RelPath> {
    RelPath::parse(path).map_err(|_| ApiError::bad_request("invalid plugin name"))
}

/// The plugins installed in a running workspace, with their manifests.
async fn installed(state: &AppState, ws: &Workspace) -> Result<Vec<PluginInfo>, AccessError> {
    let dir = rel("plugins").map_err(|_| AccessError::Failed)?;
    let entries = state
        .lifecycle
        .list_files(ws, FileRoot::Configs, Some(&dir), 1)
        .await?;
    let mut out = Vec::new();
    let mut names: Vec<String> = entries
        .into_iter()
        .filter(|e| e.dir && !e.path.starts_with('.') && plugin_name(&e.path).is_ok())
        .map(|e| e.path)
        .collect();
    names.sort();
    for name in names {
        let yaml = match RelPath::parse(&format!("plugins/{name}/plugin.yaml")) {
            Ok(p) => state
                .lifecycle
                .read_file_at(ws, FileRoot::Configs, &p)
                .await
                .ok(),
            Err(_) => None,
        };
        out.push(PluginInfo::parse(&name, yaml.as_deref()));
    }
    Ok(out)
}

/// `GET /workspaces/:id/plugins`.
pub(crate) async fn installed_list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let ws = workspace(&state, id).await?;
    match state.lifecycle.container_state(&ws).await {
        ContainerState::NotRunning => return Ok(ok_json(StatusCode::OK, json!([]))),
        ContainerState::Transient => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, TRANSIENT));
        }
        ContainerState::Running => {}
    }
    let mut plugins = match installed(&state, &ws).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(workspace = %id, error = %e, "cannot list installed plugins");
            Vec::new()
        }
    };
    if !ws.runtime.is_empty() {
        for p in &mut plugins {
            p.supported_on_runtime = Some(p.supports(&ws.runtime));
        }
    }
    Ok(ok_json(StatusCode::OK, json!(plugins)))
}

/// `GET /workspaces/:id/plugins/compatibility?runtime=`.
pub(crate) async fn compatibility(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(q): Query<RuntimeQuery>,
) -> ApiResult<Response> {
    let target = q.runtime.trim().to_owned();
    if target.is_empty() {
        return Err(ApiError::bad_request("runtime query parameter is required"));
    }
    let ws = workspace(&state, id).await?;
    let plugins = match state.lifecycle.container_state(&ws).await {
        ContainerState::NotRunning => Vec::new(),
        ContainerState::Transient => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, TRANSIENT));
        }
        ContainerState::Running => installed(&state, &ws)
            .await
            .map_err(|e| ApiError::internal("failed to list installed plugins", &e))?,
    };
    let (ok, bad): (Vec<PluginInfo>, Vec<PluginInfo>) =
        plugins.into_iter().partition(|p| p.supports(&target));
    Ok(ok_json(
        StatusCode::OK,
        json!({ "target_runtime": target, "compatible": ok, "incompatible": bad, "all_compatible": bad.is_empty() }),
    ))
}

/// The external-runtime guard; a failed lookup continues (fail open).
async fn external_guard(
    state: &AppState,
    id: WorkspaceId,
    error: &str,
    hint: &str,
) -> ApiResult<()> {
    if let Ok(Some(ws)) = state.store.workspaces().get(id).await
        && ws.runtime == Runtime::EXTERNAL
    {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error).with("hint", hint));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct InstallRequest {
    #[serde(default)]
    source: String,
    #[serde(default)]
    sha256: Option<String>,
}

/// `POST /workspaces/:id/plugins` `{source, sha256?}`.
pub(crate) async fn install(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    body: Bytes,
) -> ApiResult<Response> {
    external_guard(
        &state,
        id,
        "plugin install via push is not supported for external runtimes",
        "external workspaces pull plugins via GET /workspaces/:id/plugins/:name/download",
    )
    .await?;
    let limits = state.catalog.limits;
    if body.len() > limits.body_max_bytes {
        return Err(ApiError::bad_request("invalid request body"));
    }
    let req: InstallRequest = super::body::json(&body, "invalid request body")?;
    let ws = workspace(&state, id).await?;
    let work = async {
        // The allowlist is checked before anything is fetched.
        let (_, name) = expected_name(&state.catalog, req.source.trim())?;
        if !crate::routes::plugin_allowlist::allowed(&state, &ws, &name).await {
            return Err(ApiError::forbidden(format!(
                "plugin \"{name}\" is not in the org allowlist"
            )));
        }
        let staged = resolve_and_stage(
            &state.catalog,
            &state.http_client,
            state.github_app.as_deref(),
            req.source.trim(),
            req.sha256.as_deref(),
        )
        .await?;
        match state.lifecycle.container_state(&ws).await {
            ContainerState::Running => {}
            ContainerState::NotRunning => {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_RUNNING));
            }
            ContainerState::Transient => {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, TRANSIENT));
            }
        }
        let mut files = Vec::new();
        for (path, bytes) in &staged.files {
            match RelPath::parse(&format!("plugins/{}/{path}", staged.name)) {
                Ok(p) => files.push((p, bytes.clone())),
                Err(_) => {
                    tracing::warn!(plugin = %staged.name, path = %path, "plugin file with an unusable path skipped")
                }
            }
        }
        let dir = rel(&format!("plugins/{}", staged.name))?;
        // Replace, not overlay: files of an older version must not survive.
        if let Err(e) = state
            .lifecycle
            .delete_file(&ws, FileRoot::Configs, &dir)
            .await
        {
            tracing::warn!(workspace = %id, error = %e, "old plugin files not removed");
        }
        state
            .lifecycle
            .write_files(&ws, FileRoot::Configs, &files)
            .await
            .map_err(|e| ApiError::internal("failed to copy plugin to container", &e))?;
        restart_later(&state, id);
        Ok::<Response, ApiError>(ok_json(
            StatusCode::OK,
            json!({ "status": "installed", "plugin": staged.name, "source": staged.source }),
        ))
    };
    match tokio::time::timeout(limits.fetch_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "plugin install timed out",
        )),
    }
}

/// Restarts the workspace in the background so the agent loads its plugins again.
fn restart_later(state: &AppState, id: WorkspaceId) {
    let lifecycle = state.lifecycle.clone();
    tokio::spawn(async move {
        if let Err(e) = lifecycle.restart(id).await {
            tracing::warn!(workspace = %id, error = %e, "restart after a plugin change failed");
        }
    });
}

/// `DELETE /workspaces/:id/plugins/:name`.
pub(crate) async fn uninstall(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id: WorkspaceId = id
        .parse()
        .map_err(|_| ApiError::bad_request(crate::extract::INVALID_WORKSPACE_ID))?;
    external_guard(
        &state,
        id,
        "plugin uninstall via docker exec is not supported for external runtimes",
        "external workspaces manage their plugin directory locally; fetch plugins via GET /workspaces/:id/plugins/:name/download",
    )
    .await?;
    plugin_name(&name).map_err(|_| ApiError::bad_request("invalid plugin name"))?;
    let ws = workspace(&state, id).await?;
    match state.lifecycle.container_state(&ws).await {
        ContainerState::Running => {}
        ContainerState::NotRunning => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_RUNNING));
        }
        ContainerState::Transient => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, TRANSIENT));
        }
    }
    let manifest = state
        .lifecycle
        .read_file_at(
            &ws,
            FileRoot::Configs,
            &rel(&format!("plugins/{name}/plugin.yaml"))?,
        )
        .await
        .ok();
    let info = PluginInfo::parse(&name, manifest.as_deref());
    let claude = rel("CLAUDE.md")?;
    match state
        .lifecycle
        .read_file_at(&ws, FileRoot::Configs, &claude)
        .await
    {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let stripped = claude_md::strip(&text, &name);
            if stripped != text
                && let Err(e) = state
                    .lifecycle
                    .write_files(&ws, FileRoot::Configs, &[(claude, stripped.into_bytes())])
                    .await
            {
                tracing::warn!(workspace = %id, error = %e, "CLAUDE.md not rewritten");
            }
        }
        Err(AccessError::NotFound) => {}
        Err(e) => tracing::warn!(workspace = %id, error = %e, "CLAUDE.md not read"),
    }
    for skill in info.skills.iter().filter(|s| plugin_name(s).is_ok()) {
        if let Ok(p) = RelPath::parse(&format!("skills/{skill}"))
            && let Err(e) = state
                .lifecycle
                .delete_file(&ws, FileRoot::Configs, &p)
                .await
        {
            tracing::warn!(workspace = %id, skill = %skill, error = %e, "plugin skill not removed");
        }
    }
    state
        .lifecycle
        .delete_file(&ws, FileRoot::Configs, &rel(&format!("plugins/{name}"))?)
        .await
        .map_err(|e| ApiError::internal("failed to remove plugin", &e))?;
    restart_later(&state, id);
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "uninstalled", "plugin": name }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DownloadQuery {
    #[serde(default)]
    source: String,
}

/// `GET /workspaces/:id/plugins/:name/download?source=` (the workspace's own token once it
/// has one).
pub(crate) async fn download(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let _: WorkspaceId = id
        .parse()
        .map_err(|_| ApiError::bad_request(crate::extract::INVALID_WORKSPACE_ID))?;
    plugin_name(&name).map_err(|_| ApiError::bad_request("invalid plugin name"))?;
    let source = if q.source.trim().is_empty() {
        format!("local://{name}")
    } else {
        q.source.trim().to_owned()
    };
    let staged = tokio::time::timeout(
        state.catalog.limits.fetch_timeout,
        resolve_and_stage(
            &state.catalog,
            &state.http_client,
            state.github_app.as_deref(),
            &source,
            None,
        ),
    )
    .await
    .map_err(|_| ApiError::new(StatusCode::GATEWAY_TIMEOUT, "plugin download timed out"))??;
    if staged.name != name {
        return Err(ApiError::bad_request(format!(
            "source resolved to plugin \"{}\" but URL requested \"{name}\"",
            staged.name
        ))
        .with("resolved_name", staged.name.clone())
        .with("requested_name", name.clone()));
    }
    let files = staged.files;
    let packed = tokio::task::spawn_blocking(move || archive::pack(&files))
        .await
        .map_err(|e| ApiError::internal("failed to pack plugin", &e))?
        .map_err(|e| {
            ApiError::internal("failed to pack plugin", &e).with("plugin", name.clone())
        })?;
    let length = packed.len().to_string();
    let mut response = (StatusCode::OK, Body::from(packed)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    let value = |v: String| {
        HeaderValue::from_str(&v).map_err(|e| ApiError::internal("failed to pack plugin", &e))
    };
    h.insert(
        header::CONTENT_DISPOSITION,
        value(format!("attachment; filename=\"{name}.tar.gz\""))?,
    );
    h.insert(header::CONTENT_LENGTH, value(length)?);
    h.insert("x-plugin-name", value(name.clone())?);
    h.insert("x-plugin-source", value(staged.source)?);
    Ok(response)
}
