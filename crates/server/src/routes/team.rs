//! Teams: expand a workspace into the sub-workspaces its template declares, and collapse it
//! again. Both go through the same paths as create and delete.

use std::path::{Path as FsPath, PathBuf};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::{EventType, RelPath, Runtime, Tier, validation};
use molecule_store::{NewWorkspace, Workspace};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::WorkspacePath;
use crate::lifecycle::LifecycleError;
use crate::state::AppState;
use crate::templates::source;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TeamConfig {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) sub_workspaces: Vec<SubWorkspace>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SubWorkspace {
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

/// Parses a template's `config.yaml`.
pub(crate) fn parse_config(text: &str) -> Result<TeamConfig, serde_norway::Error> {
    serde_norway::from_str(text)
}

/// One sub-workspace `expand` creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedChild {
    /// `name`, else `config`.
    pub(crate) name: String,
    /// The role, when valid.
    pub(crate) role: Option<String>,
    /// `config`: the template folder the child starts from, when it is a valid template name.
    pub(crate) template: Option<String>,
}

/// The sub-workspaces `expand` creates, in order (an invalid role dropped); and how many
/// entries were skipped for want of a valid name.
pub(crate) fn planned_children(config: TeamConfig) -> (Vec<PlannedChild>, usize) {
    let mut children = Vec::new();
    let mut skipped = 0;
    for entry in config.sub_workspaces {
        let template = entry
            .config
            .clone()
            .filter(|t| validation::template_name(t).is_ok());
        match entry
            .name
            .or(entry.config)
            .filter(|n| validation::name(n).is_ok())
        {
            Some(name) => {
                let role = entry.role.filter(|r| validation::role(r).is_ok());
                children.push(PlannedChild {
                    name,
                    role,
                    template,
                });
            }
            None => skipped += 1,
        }
    }
    (children, skipped)
}

/// A workspace name as a template folder name: lower case, spaces and dashes as `-`, only
/// `[a-z0-9_-]` kept.
pub(crate) fn folder_name(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' | '-' => Some('-'),
            'a'..='z' | '0'..='9' | '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The `config.yaml` of the workspace's template: the folder named after it, else any
/// template whose `name:` is the workspace's name.
fn find_template(configs: &FsPath, ws_name: &str) -> Option<PathBuf> {
    let direct = configs.join(folder_name(ws_name)).join("config.yaml");
    if direct.is_file() {
        return Some(direct);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(configs)
        .ok()?
        .flatten()
        .map(|e| e.path().join("config.yaml"))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    entries.into_iter().find(|p| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|text| parse_config(&text).ok())
            .and_then(|c| c.name)
            .is_some_and(|n| n == ws_name)
    })
}

/// `POST /workspaces/:id/expand` (workspace auth): creates and provisions the sub-workspaces
/// of the workspace's template, as children with the parent's tier.
pub(crate) async fn expand(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let parent: Workspace = crate::routes::live_workspace(&state, id, "lookup failed").await?;
    let no_config = || ApiError::bad_request("no config found for workspace");
    let configs = state.configs_dir.as_deref().ok_or_else(no_config)?;
    let file = find_template(configs, &parent.name).ok_or_else(no_config)?;
    let text = std::fs::read_to_string(&file).or_internal("failed to read config")?;
    let config = parse_config(&text).or_internal("failed to parse config")?;
    if config.sub_workspaces.is_empty() {
        return Err(ApiError::bad_request(
            "workspace has no sub_workspaces defined in config",
        ));
    }
    let tier = Tier::try_from(i64::from(parent.tier)).unwrap_or(Tier::DEFAULT);
    let runtime =
        Runtime::new(parent.runtime.clone()).unwrap_or_else(|_| Runtime::default_runtime());
    let mut children = Vec::new();
    let (planned, skipped) = planned_children(config);
    if skipped > 0 {
        tracing::warn!(workspace = %id, skipped, "expand: skipped sub-workspaces without a valid name");
    }
    for PlannedChild {
        name,
        role,
        template,
    } in planned
    {
        let mut new = NewWorkspace::named(name);
        new.role = role.clone();
        new.tier = tier;
        new.runtime = runtime.clone();
        new.parent_id = Some(id);
        let child = match state.store.workspaces().create(new).await {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(workspace = %id, error = %e, "expand: cannot create a child");
                continue;
            }
        };
        state
            .events
            .emit(
                EventType::WorkspaceProvisioning,
                Some(child.id),
                json!({ "name": child.name, "tier": child.tier, "parent_id": id }),
            )
            .await;
        let files = child_files(configs, template, &child).await;
        state.lifecycle.spawn_provision_with_files(child.id, files);
        children.push(json!({ "id": child.id, "name": child.name, "role": role }));
    }
    state
        .events
        .emit(
            EventType::WorkspaceExpanded,
            Some(id),
            json!({ "children": children }),
        )
        .await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "expanded", "children": children }),
    ))
}

/// The files a child starts from: its `config` template's, else `<runtime>-default`'s, else a
/// generated `config.yaml` (a template that cannot be read is logged and generated instead).
async fn child_files(
    configs: &FsPath,
    template: Option<String>,
    child: &Workspace,
) -> Vec<(RelPath, Vec<u8>)> {
    let configs = configs.to_path_buf();
    let child = child.clone();
    let read = tokio::task::spawn_blocking(move || {
        let who = source::Identity {
            name: &child.name,
            role: child.role.as_deref(),
            tier: child.tier,
            runtime: &child.runtime,
            model: None,
        };
        let read = source::config_files(Some(&configs), template.as_deref(), &who);
        read.unwrap_or_else(|e| {
            tracing::warn!(workspace = %child.id, error = %e, "expand: template not used");
            source::config_files(None, None, &who).unwrap_or_default()
        })
    });
    read.await.unwrap_or_default()
}

/// `POST /workspaces/:id/collapse` (workspace auth): removes the direct children, each with
/// its whole subtree, through the same path as `DELETE` (tokens revoked, compute stopped).
pub(crate) async fn collapse(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let workspaces = state.store.workspaces();
    workspaces
        .get(id)
        .await
        .or_internal("lookup failed")?
        .filter(|w| !w.status.is_removed())
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    let children = workspaces
        .children(id)
        .await
        .or_internal("failed to query children")?;
    let mut removed = Vec::new();
    for child in children {
        match state.lifecycle.remove(child.id, false).await {
            Ok(_) => removed.push(child.name),
            Err(LifecycleError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    state
        .events
        .emit(
            EventType::WorkspaceCollapsed,
            Some(id),
            json!({ "removed_children": removed }),
        )
        .await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "collapsed", "removed": removed }),
    ))
}
