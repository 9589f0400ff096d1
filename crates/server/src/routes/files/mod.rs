//! The workspace Files API (spec templates §1.2, provisioner §1.10): list, read, write, delete,
//! bulk replace and the shared context, through the lifecycle service's access layer, with
//! the host template directory as the fallback for reads while the compute is not running.
//!
//! Every path passes [`RelPath`] (the `rel_path_ok` guard plus NUL) before anything else runs.
//! Content is JSON text: a file that is valid UTF-8 is answered as it is; any other file is
//! answered base64-encoded with `"encoding":"base64"` (never lossily). A write may send
//! `"encoding":"base64"` the same way. One file is at most 5 MiB (413).

mod template;
pub(crate) mod terminal;

use std::collections::BTreeMap;

use axum::extract::{RawPathParams, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use molecule_domain::paths::BAD_ROOT;
use molecule_domain::{FileRoot, RelPath, Runtime, WorkspaceId};
use molecule_provisioner_api::access::{FileEntry, MAX_READ_BYTES};
use molecule_store::Workspace;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ok_json};
use crate::extract::{INVALID_BODY, JsonBody, Query, WorkspacePath};
use crate::lifecycle::{AccessError, ContainerState};
use crate::state::AppState;
use crate::templates::generated;

use super::live_workspace;

/// The agent's configuration file at the root of `/configs`.
const CONFIG_YAML: &str = "config.yaml";
/// The most files one bulk replace may carry.
const MAX_BULK_FILES: usize = 200;
/// The answer to a path that fails the guard.
const INVALID_PATH: &str = "invalid path";
/// The answer when the compute is not running and the operation needs it.
const NOT_RUNNING: &str = "workspace container not running";
/// The answer when the compute's state is unknown (§1.0.10).
pub(crate) const TRANSIENT: &str = "could not determine workspace container state; retry";

fn invalid_path() -> ApiError {
    ApiError::bad_request(INVALID_PATH)
}

fn unavailable(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file too large (max 5 MiB)")
}

/// 422 for the write routes of an `external` workspace: its files are its operator's.
fn external() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "file access is not supported for external runtimes",
    )
}

/// The answer of an access failure that every route shares; `failed` is the route's 500.
fn access_error(e: AccessError, failed: &str) -> ApiError {
    match e {
        AccessError::NoBackend | AccessError::NotFound => unavailable(NOT_RUNNING),
        AccessError::Unavailable => unavailable(TRANSIENT),
        AccessError::TooLarge => too_large(),
        AccessError::Refused(r) => ApiError::bad_request(r.to_string()),
        AccessError::Unsupported => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "file access is not supported by this workspace's backend",
        ),
        AccessError::Failed => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, failed),
    }
}

fn parse_root(raw: Option<&str>) -> ApiResult<FileRoot> {
    FileRoot::parse(raw.unwrap_or("")).ok_or_else(|| ApiError::bad_request(BAD_ROOT))
}

/// The `*path` remainder of the URL (percent-decoded; axum leaves out the `/` before it).
fn raw_path(params: &RawPathParams) -> ApiResult<String> {
    params
        .iter()
        .find(|(name, _)| *name == "path")
        .map(|(_, value)| value.to_owned())
        .ok_or_else(invalid_path)
}

/// A file's bytes as the API's JSON: `content` text, plus `"encoding":"base64"` when the bytes
/// are not UTF-8.
fn content_fields(bytes: Vec<u8>, into: &mut serde_json::Map<String, Value>) {
    match String::from_utf8(bytes) {
        Ok(text) => {
            into.insert("content".into(), Value::String(text));
        }
        Err(e) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
            into.insert("content".into(), Value::String(encoded));
            into.insert("encoding".into(), Value::String("base64".into()));
        }
    }
}

fn file_body(path: &RelPath, bytes: Vec<u8>) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("path".into(), Value::String(path.to_string()));
    body.insert("size".into(), json!(bytes.len()));
    content_fields(bytes, &mut body);
    Value::Object(body)
}

fn entries_body(entries: &[FileEntry]) -> Response {
    let list: Vec<Value> = entries
        .iter()
        .map(|e| json!({"path": e.path, "size": e.size, "dir": e.dir}))
        .collect();
    ok_json(StatusCode::OK, Value::Array(list))
}

fn template_dir(state: &AppState, ws: &Workspace) -> Option<std::path::PathBuf> {
    let configs = state.configs_dir.as_deref()?;
    crate::templates::source::dir_for_workspace(configs, &ws.name)
}

async fn workspace(state: &AppState, id: WorkspaceId) -> ApiResult<Workspace> {
    live_workspace(state, id, "lookup failed").await
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    root: Option<String>,
    path: Option<String>,
    depth: Option<String>,
}

/// `GET /workspaces/:id/files?root=&path=&depth=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    let root = parse_root(query.root.as_deref())?;
    let dir = match query.path.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(RelPath::parse(p).map_err(|_| invalid_path())?),
        None => None,
    };
    let depth = match query.depth.as_deref() {
        None | Some("") => 1,
        Some(d) => d
            .parse::<u8>()
            .ok()
            .filter(|d| (1..=5).contains(d))
            .ok_or_else(|| ApiError::bad_request("depth must be 1-5"))?,
    };
    let ws = workspace(&state, id).await?;
    match state.lifecycle.container_state(&ws).await {
        ContainerState::Running => {
            match state
                .lifecycle
                .list_files(&ws, root, dir.as_ref(), depth)
                .await
            {
                Ok(entries) => return Ok(entries_body(&entries)),
                Err(AccessError::TooLarge) => return Err(listing_too_large()),
                Err(AccessError::Refused(r)) => return Err(ApiError::bad_request(r.to_string())),
                Err(AccessError::Unavailable) => return Err(unavailable(TRANSIENT)),
                // The listing failed: the template answers, as the spec's fall-through.
                Err(_) => {}
            }
        }
        ContainerState::Transient => return Err(unavailable(TRANSIENT)),
        ContainerState::NotRunning => {}
    }
    let Some(template) = template_dir(&state, &ws) else {
        return Ok(entries_body(&[]));
    };
    let listed =
        tokio::task::spawn_blocking(move || template::list(&template, dir.as_ref(), depth))
            .await
            .map_err(|e| ApiError::internal("failed to list files", &e))?;
    match listed {
        Ok(entries) => Ok(entries_body(&entries)),
        Err(template::FallbackError::TooLarge) => Err(listing_too_large()),
        Err(template::FallbackError::NotFound) => Ok(entries_body(&[])),
    }
}

fn listing_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "listing too large: list a subdirectory or a lower depth",
    )
}

#[derive(Deserialize)]
pub(crate) struct RootQuery {
    root: Option<String>,
}

/// `GET /workspaces/:id/files/*path?root=`.
pub(crate) async fn read(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    params: RawPathParams,
    Query(query): Query<RootQuery>,
) -> ApiResult<Response> {
    let path = RelPath::parse(&raw_path(&params)?).map_err(|_| invalid_path())?;
    let root = parse_root(query.root.as_deref())?;
    let ws = workspace(&state, id).await?;
    match state.lifecycle.container_state(&ws).await {
        ContainerState::Running => {
            return match state.lifecycle.read_file_at(&ws, root, &path).await {
                Ok(bytes) => Ok(ok_json(StatusCode::OK, file_body(&path, bytes))),
                Err(AccessError::NotFound) => Err(ApiError::not_found("file not found")),
                Err(e) => Err(access_error(e, "failed to read file")),
            };
        }
        ContainerState::Transient => return Err(unavailable(TRANSIENT)),
        ContainerState::NotRunning => {}
    }
    let Some(template) = template_dir(&state, &ws) else {
        return Err(ApiError::not_found(
            "file not found (container offline, no template)",
        ));
    };
    let wanted = path.clone();
    let read = tokio::task::spawn_blocking(move || template::read(&template, &wanted))
        .await
        .map_err(|e| ApiError::internal("failed to read file", &e))?;
    match read {
        Ok(bytes) => Ok(ok_json(StatusCode::OK, file_body(&path, bytes))),
        Err(template::FallbackError::TooLarge) => Err(too_large()),
        Err(template::FallbackError::NotFound) => Err(ApiError::not_found("file not found")),
    }
}

#[derive(Deserialize)]
pub(crate) struct WriteBody {
    content: String,
    #[serde(default)]
    encoding: Option<String>,
}

/// The bytes of a written `content`: text, or base64 with `"encoding":"base64"`; at most
/// 5 MiB.
fn decode(content: String, encoding: Option<&str>) -> ApiResult<Vec<u8>> {
    let bytes = match encoding {
        None | Some("" | "utf-8" | "utf8") => content.into_bytes(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|_| ApiError::bad_request(INVALID_BODY))?,
        Some(_) => return Err(ApiError::bad_request(INVALID_BODY)),
    };
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_READ_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Refuses writes to an external workspace and to one whose state is unknown.
async fn writable(state: &AppState, ws: &Workspace) -> ApiResult<ContainerState> {
    if ws.runtime == Runtime::EXTERNAL && ws.instance_id.as_deref().unwrap_or("").is_empty() {
        return Err(external());
    }
    match state.lifecycle.container_state(ws).await {
        ContainerState::Transient => Err(unavailable(TRANSIENT)),
        known => Ok(known),
    }
}

/// `PUT /workspaces/:id/files/*path?root=` `{"content": string, "encoding"?: "base64"}`.
pub(crate) async fn write(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    params: RawPathParams,
    Query(query): Query<RootQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The path is checked before the body is parsed (spec order: path → body → lookup).
    let path = RelPath::parse(&raw_path(&params)?).map_err(|_| invalid_path())?;
    let body: WriteBody =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request(INVALID_BODY))?;
    let root = parse_root(query.root.as_deref())?;
    let bytes = decode(body.content, body.encoding.as_deref())?;
    let ws = workspace(&state, id).await?;
    writable(&state, &ws).await?;
    state
        .lifecycle
        .write_files(&ws, root, &[(path.clone(), bytes)])
        .await
        .map_err(|e| access_error(e, "failed to write file"))?;
    Ok(ok_json(
        StatusCode::OK,
        json!({"status": "saved", "path": path.to_string()}),
    ))
}

/// `DELETE /workspaces/:id/files/*path?root=`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    params: RawPathParams,
    Query(query): Query<RootQuery>,
) -> ApiResult<Response> {
    let raw = raw_path(&params)?;
    if raw.starts_with('/') {
        return Err(ApiError::bad_request("absolute paths not permitted"));
    }
    let path = RelPath::parse(&raw).map_err(|_| invalid_path())?;
    let root = parse_root(query.root.as_deref())?;
    let ws = workspace(&state, id).await?;
    writable(&state, &ws).await?;
    state
        .lifecycle
        .delete_file(&ws, root, &path)
        .await
        .map_err(|e| access_error(e, "failed to delete"))?;
    Ok(ok_json(
        StatusCode::OK,
        json!({"status": "deleted", "path": path.to_string()}),
    ))
}

#[derive(Deserialize)]
pub(crate) struct BulkBody {
    files: BTreeMap<String, String>,
}

/// `PUT /workspaces/:id/files?root=` `{"files": {path: content}}`: at most 200 files, every
/// path checked before anything is written.
pub(crate) async fn replace(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<RootQuery>,
    JsonBody(body): JsonBody<BulkBody>,
) -> ApiResult<Response> {
    let root = parse_root(query.root.as_deref())?;
    let n = body.files.len();
    if n > MAX_BULK_FILES {
        return Err(ApiError::bad_request(format!(
            "too many files ({n}), max {MAX_BULK_FILES}"
        )));
    }
    let ws = workspace(&state, id).await?;
    let mut files = Vec::with_capacity(n);
    for (raw, content) in body.files {
        let path = RelPath::parse(&raw).map_err(|_| ApiError::bad_request(INVALID_BODY))?;
        files.push((path, decode(content, None)?));
    }
    if writable(&state, &ws).await? == ContainerState::Running && root == FileRoot::Configs {
        with_generated_config(&state, &ws, &mut files).await?;
    }
    let source = state
        .lifecycle
        .write_files(&ws, root, &files)
        .await
        .map_err(|e| access_error(e, "failed to write files to workspace"))?;
    Ok(ok_json(
        StatusCode::OK,
        json!({"status": "replaced", "workspace": id, "files": n, "source": source.as_str()}),
    ))
}

/// Adds the generated import `config.yaml` (spec templates §1.1) to a bulk replace into a
/// running compute that brings none and has none, so the agent can still start from it.
async fn with_generated_config(
    state: &AppState,
    ws: &Workspace,
    files: &mut Vec<(RelPath, Vec<u8>)>,
) -> ApiResult<()> {
    let config = RelPath::parse(CONFIG_YAML).map_err(|_| invalid_path())?;
    if files.iter().any(|(path, _)| *path == config) {
        return Ok(());
    }
    match state
        .lifecycle
        .read_file_at(ws, FileRoot::Configs, &config)
        .await
    {
        Ok(_) => Ok(()),
        Err(AccessError::NotFound) => {
            let yaml = generated::config_yaml(&ws.name, files.iter().map(|(path, _)| path));
            files.push((config, yaml.into_bytes()));
            Ok(())
        }
        Err(e) => Err(access_error(e, "failed to write files to workspace")),
    }
}

/// `GET /workspaces/:id/shared-context`: the files `config.yaml` lists under
/// `shared_context`, each read as one path under `/configs`; anything unreadable is left out.
pub(crate) async fn shared_context(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let ws = workspace(&state, id).await?;
    let running = state.lifecycle.container_state(&ws).await == ContainerState::Running;
    let template = template_dir(&state, &ws);
    let read = |path: RelPath| {
        let state = state.clone();
        let ws = ws.clone();
        let template = template.clone();
        async move {
            if running {
                return state
                    .lifecycle
                    .read_file_at(&ws, FileRoot::Configs, &path)
                    .await
                    .ok();
            }
            let dir = template?;
            tokio::task::spawn_blocking(move || template::read(&dir, &path).ok())
                .await
                .ok()
                .flatten()
        }
    };
    let Ok(config) = RelPath::parse(CONFIG_YAML) else {
        return Ok(ok_json(StatusCode::OK, json!([])));
    };
    let entries = read(config)
        .await
        .and_then(|bytes| yaml_serde::from_slice::<SharedContext>(&bytes).ok())
        .map(|c| c.shared_context)
        .unwrap_or_default();
    let mut out = Vec::new();
    for entry in entries {
        let Ok(path) = RelPath::parse(&entry) else {
            continue;
        };
        if let Some(bytes) = read(path.clone()).await {
            let mut item = serde_json::Map::new();
            item.insert("path".into(), Value::String(path.to_string()));
            content_fields(bytes, &mut item);
            out.push(Value::Object(item));
        }
    }
    Ok(ok_json(StatusCode::OK, Value::Array(out)))
}

#[derive(Deserialize)]
struct SharedContext {
    #[serde(default)]
    shared_context: Vec<String>,
}
