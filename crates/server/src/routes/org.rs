//! Org templates (spec templates §1.3): `GET /org/templates` lists them, `POST /org/import`
//! creates a whole tree of workspaces from one. The template is loaded (includes expanded,
//! size and alias limits), its required env checked against the global secrets, and the
//! whole tree planned — every path, prompt file and field validated — before the first
//! insert; `org_create` then creates it all or rolls back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ok_json};
use crate::extract::INVALID_BODY;
use crate::org::paths::inside_root;
use crate::org::plan::{self, Sources};
use crate::org::template::{OrgTemplate, collect};
use crate::org::yaml::{self, LoadError};
use crate::routes::body;
use crate::state::AppState;

/// Most workspaces one import may create.
pub const MAX_IMPORT_WORKSPACES: usize = 200;

/// The `org.yaml` (or `org.yml`) of a template directory.
fn org_file(dir: &Path) -> Option<PathBuf> {
    ["org.yaml", "org.yml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Loads and decodes the template in `dir` (absolute); includes must stay inside `dir`.
fn load_template(dir: &Path) -> Result<OrgTemplate, ApiError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(file) = org_file(dir) else {
        return Err(ApiError::not_found(format!(
            "org template not found: {name}"
        )));
    };
    let value = yaml::load(dir, &file).map_err(|e| {
        tracing::warn!(template = name, error = %e, "org template expansion failed");
        match e {
            LoadError::Read(_) if !file.is_file() => {
                ApiError::not_found(format!("org template not found: {name}"))
            }
            _ => ApiError::bad_request("org template expansion failed"),
        }
    })?;
    serde_json::from_value(value).map_err(|e| {
        tracing::warn!(template = name, error = %e, "invalid org template");
        ApiError::bad_request("invalid org template")
    })
}

/// `GET /org/templates` (admin).
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let root = state.catalog.org_templates_dir.clone();
    let entries = tokio::task::spawn_blocking(move || list_dir(&root))
        .await
        .map_err(|e| ApiError::internal("failed to list org templates", &e))?;
    Ok(ok_json(StatusCode::OK, Value::Array(entries)))
}

fn list_dir(root: &Path) -> Vec<Value> {
    let Ok(abs) = crate::org::paths::absolute(root) else {
        return Vec::new();
    };
    let Ok(read) = std::fs::read_dir(&abs) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if org_file(&dir).is_none() {
            if dir.join(".git").is_dir() {
                tracing::warn!(
                    template = name,
                    "org template dir has .git but no org.yaml (half checkout?)"
                );
            }
            continue;
        }
        let Ok(t) = load_template(&dir) else {
            continue;
        };
        let (required, recommended) = collect(&t);
        out.push(json!({
            "dir": name,
            "name": t.name,
            "description": t.description,
            "workspaces": t.count(),
            "required_env": required,
            "recommended_env": recommended,
        }));
    }
    out
}

/// The `POST /org/import` body; unknown fields (a legacy `force`) are ignored.
#[derive(Debug, Deserialize)]
struct ImportRequest {
    #[serde(default)]
    dir: String,
    #[serde(default)]
    template: Option<Value>,
}

/// `POST /org/import` (admin).
pub(crate) async fn import(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: ImportRequest = body::json(&body, INVALID_BODY)?;
    let root = state.catalog.org_templates_dir.clone();
    let (template, base) = if !req.dir.is_empty() {
        let abs = crate::org::paths::absolute(&root)
            .map_err(|_| ApiError::bad_request("invalid org directory"))?;
        let dir = inside_root(&root, &req.dir)
            .ok()
            .filter(|d| *d != abs)
            .ok_or_else(|| ApiError::bad_request("invalid org directory"))?;
        let d = dir.clone();
        let t = tokio::task::spawn_blocking(move || load_template(&d))
            .await
            .map_err(|e| ApiError::internal("org import failed", &e))??;
        (t, Some(dir))
    } else {
        let t = match req.template {
            Some(v) => serde_json::from_value::<OrgTemplate>(v)
                .map_err(|_| ApiError::bad_request("invalid org template"))?,
            None => OrgTemplate::default(),
        };
        if t.name.trim().is_empty() {
            return Err(ApiError::bad_request("provide 'dir' or 'template'"));
        }
        (t, None)
    };
    if template.count() > MAX_IMPORT_WORKSPACES {
        return Err(ApiError::bad_request(format!(
            "org template has more than {MAX_IMPORT_WORKSPACES} workspaces"
        )));
    }
    preflight(&state, &template).await?;
    let configs = state.configs_dir.as_deref().cloned();
    let plugins = state.catalog.plugins_dir.clone();
    let endpoints = state.channels.ctx().endpoints.clone();
    let now = state.scheduler.now();
    let t = template.clone();
    let planned = tokio::task::spawn_blocking(move || {
        plan::plan(
            &t,
            &Sources {
                org_base: base.as_deref(),
                configs_dir: configs.as_deref(),
                plugins_dir: &plugins,
                endpoints: &endpoints,
                now,
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal("org import failed", &e))?
    .map_err(|e| ApiError::bad_request(e.0))?;
    super::org_create::create(&state, &template, planned).await
}

/// The required-env preflight: only global secrets with a value count; a lookup failure
/// refuses the import (fail closed).
async fn preflight(state: &AppState, t: &OrgTemplate) -> ApiResult<()> {
    let (required, _) = collect(t);
    if required.is_empty() {
        return Ok(());
    }
    let values = state.store.secrets().global_values().await.map_err(|e| {
        ApiError::internal(
            "could not verify required environment variables; try again",
            &e,
        )
    })?;
    let have: BTreeSet<String> = values
        .into_iter()
        .filter(|(_, v)| v.as_ref().is_ok_and(|v| !v.expose().is_empty()))
        .map(|(k, _)| k)
        .take(10_000)
        .collect();
    let missing: Vec<&crate::org::template::EnvRequirement> =
        required.iter().filter(|r| !r.satisfied_by(&have)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "missing required environment variables",
    )
    .with("missing_env", json!(missing))
    .with("required_env", json!(required))
    .with("template", t.name.clone())
    .with(
        "suggestion",
        "set these as global secrets (POST /settings/secrets) before importing",
    ))
}
