//! Bundles (spec templates §1.4): `GET /bundles/export/:id` writes a workspace subtree as a
//! `.bundle.json` (config, system prompt, CLAUDE.md and skills; never secrets, tokens or
//! `.env` files), `POST /bundles/import` recreates one with fresh ids. An import validates
//! the whole bundle first (wrong schema or shape → 400, nothing created) and rolls back what
//! it inserted if an insert fails.

use std::future::Future;
use std::pin::Pin;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::{EventType, FileRoot, RelPath, Runtime, Tier, WorkspaceId, validation};
use molecule_store::{NewWorkspace, Workspace};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult, ok_json};
use crate::lifecycle::ContainerState;
use crate::state::AppState;

/// The bundle schema this server reads and writes.
pub const SCHEMA: &str = "1.0";
/// Deepest bundle tree accepted.
const MAX_DEPTH: usize = 16;
/// Most workspaces one bundle may hold.
const MAX_NODES: usize = 200;

/// A skill of a bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BundleSkill {
    /// Directory name under `skills/`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// First text line of its SKILL.md.
    #[serde(default)]
    pub description: String,
    /// Its files by path relative to the skill.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A `.bundle.json` document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bundle {
    /// Must be `1.0`.
    pub schema: String,
    /// The exported workspace's id.
    #[serde(default)]
    pub id: String,
    /// Name.
    pub name: String,
    /// The workspace's role.
    #[serde(default)]
    pub description: String,
    /// Tier.
    #[serde(default)]
    pub tier: i64,
    /// Model.
    #[serde(default)]
    pub model: String,
    /// System prompt.
    #[serde(default)]
    pub system_prompt: String,
    /// Skills.
    #[serde(default)]
    pub skills: Vec<BundleSkill>,
    /// Tools.
    #[serde(default)]
    pub tools: Vec<Value>,
    /// Other config files by path (`config.yaml`, `CLAUDE.md`).
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
    /// Children.
    #[serde(default)]
    pub sub_workspaces: Vec<Bundle>,
    /// The agent card.
    #[serde(default)]
    pub agent_card: Option<Value>,
    /// Author.
    #[serde(default)]
    pub author: String,
    /// Version.
    #[serde(default)]
    pub version: String,
}

/// The prompt files an export carries besides the skills.
const EXPORTED: [&str; 2] = ["config.yaml", "CLAUDE.md"];

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `GET /bundles/export/:id` (admin).
pub(crate) async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("bundle not found");
    let id: WorkspaceId = id.parse().map_err(|_| not_found())?;
    let ws = state
        .store
        .workspaces()
        .get(id)
        .await
        .ok()
        .flatten()
        .filter(|w| !w.status.is_removed())
        .ok_or_else(not_found)?;
    let bundle = export_node(&state, ws, 0).await;
    Ok(ok_json(StatusCode::OK, json!(bundle)))
}

fn export_node(state: &AppState, ws: Workspace, depth: usize) -> Boxed<'_, Bundle> {
    Box::pin(async move {
        let files = read_config(state, &ws).await;
        let mut bundle = Bundle {
            schema: SCHEMA.to_owned(),
            id: ws.id.to_string(),
            name: ws.name.clone(),
            description: ws.role.clone().unwrap_or_default(),
            tier: i64::from(ws.tier),
            agent_card: ws.agent_card.clone(),
            version: "1.0.0".to_owned(),
            ..Bundle::default()
        };
        let mut skills: BTreeMap<String, BundleSkill> = BTreeMap::new();
        for (path, content) in files {
            if path == "system-prompt.md" {
                bundle.system_prompt = content;
            } else if let Some(rest) = path.strip_prefix("skills/")
                && let Some((skill, rel)) = rest.split_once('/')
            {
                let entry = skills
                    .entry(skill.to_owned())
                    .or_insert_with(|| BundleSkill {
                        id: skill.to_owned(),
                        name: skill.to_owned(),
                        ..BundleSkill::default()
                    });
                if rel == "SKILL.md" {
                    entry.description = skill_description(&content);
                }
                entry.files.insert(rel.to_owned(), content);
            } else if EXPORTED.contains(&path.as_str()) {
                bundle.prompts.insert(path, content);
            }
        }
        bundle.skills = skills.into_values().collect();
        if depth < MAX_DEPTH
            && let Ok(children) = state.store.workspaces().children(ws.id).await
        {
            for child in children.into_iter().filter(|c| !c.status.is_removed()) {
                bundle
                    .sub_workspaces
                    .push(export_node(state, child, depth + 1).await);
            }
        }
        bundle
    })
}

/// The first non-empty, non-heading line after a leading `---` front matter.
fn skill_description(skill_md: &str) -> String {
    let mut lines = skill_md.lines().peekable();
    if lines.peek().is_some_and(|l| l.trim() == "---") {
        lines.next();
        for l in lines.by_ref() {
            if l.trim() == "---" {
                break;
            }
        }
    }
    lines
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("")
        .to_owned()
}

/// The exportable config files of a workspace: from its running compute, else from its host
/// template directory. Only `system-prompt.md`, [`EXPORTED`] and `skills/**`.
async fn read_config(state: &AppState, ws: &Workspace) -> Vec<(String, String)> {
    if state.lifecycle.container_state(ws).await == ContainerState::Running {
        let mut out = Vec::new();
        for name in ["system-prompt.md"].iter().chain(EXPORTED.iter()) {
            if let Ok(p) = RelPath::parse(name)
                && let Ok(bytes) = state
                    .lifecycle
                    .read_file_at(ws, FileRoot::Configs, &p)
                    .await
                && let Ok(text) = String::from_utf8(bytes)
            {
                out.push(((*name).to_owned(), text));
            }
        }
        if let Ok(skills) = RelPath::parse("skills")
            && let Ok(entries) = state
                .lifecycle
                .list_files(ws, FileRoot::Configs, Some(&skills), 5)
                .await
        {
            for e in entries.into_iter().filter(|e| !e.dir) {
                let path = format!("skills/{}", e.path);
                if let Ok(p) = RelPath::parse(&path)
                    && let Ok(bytes) = state
                        .lifecycle
                        .read_file_at(ws, FileRoot::Configs, &p)
                        .await
                    && let Ok(text) = String::from_utf8(bytes)
                {
                    out.push((path, text));
                }
            }
        }
        return out;
    }
    let Some(configs) = state.configs_dir.as_deref() else {
        return Vec::new();
    };
    let dir = configs.join(molecule_domain::paths::normalize_name(&ws.name));
    if !dir.is_dir() {
        return Vec::new();
    }
    let files = tokio::task::spawn_blocking(move || {
        let mut map = BTreeMap::new();
        let _ = crate::org::plan::read_tree(&dir, "", &mut map);
        map
    })
    .await
    .unwrap_or_default();
    files
        .into_iter()
        .filter(|(p, _)| {
            p == "system-prompt.md" || EXPORTED.contains(&p.as_str()) || p.starts_with("skills/")
        })
        .filter_map(|(p, b)| String::from_utf8(b).ok().map(|t| (p, t)))
        .collect()
}

/// One validated bundle node, ready to insert.
struct Planned {
    parent: Option<usize>,
    new: NewWorkspace,
    source_id: String,
    model: String,
    files: Vec<(RelPath, Vec<u8>)>,
}

fn invalid(reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid bundle: {reason}"))
}

/// The runtime of a bundle: the first `runtime:` line of its config.yaml, sanitized.
fn runtime_of(b: &Bundle) -> String {
    let raw = b
        .prompts
        .get("config.yaml")
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("runtime:"))
                .map(|r| r.trim().trim_matches(['"', '\'']).to_owned())
        })
        .unwrap_or_default();
    crate::org::render::sanitize_runtime(&raw, Runtime::DEFAULT)
}

fn plan(b: &Bundle, parent: Option<usize>, depth: usize, out: &mut Vec<Planned>) -> ApiResult<()> {
    if b.schema != SCHEMA {
        return Err(invalid(format!(
            "unsupported schema {:?} (want \"{SCHEMA}\")",
            b.schema
        )));
    }
    if depth > MAX_DEPTH || out.len() >= MAX_NODES {
        return Err(invalid("too many workspaces"));
    }
    let name = b.name.trim();
    if name.is_empty() {
        return Err(invalid("name is required"));
    }
    validation::name(name).map_err(invalid)?;
    if !b.description.is_empty() {
        validation::role(&b.description).map_err(invalid)?;
    }
    if !b.model.is_empty() {
        validation::model(&b.model).map_err(invalid)?;
    }
    let tier = if b.tier == 0 {
        Ok(Tier::DEFAULT)
    } else {
        Tier::from_request(b.tier)
    }
    .map_err(|_| invalid("tier must be between 1 and 4"))?;
    let runtime = Runtime::new(runtime_of(b)).map_err(invalid)?;
    let mut files: Vec<(String, String)> = Vec::new();
    if !b.system_prompt.is_empty() {
        files.push(("system-prompt.md".into(), b.system_prompt.clone()));
    }
    for (k, v) in &b.prompts {
        files.push((k.clone(), v.clone()));
    }
    for s in &b.skills {
        molecule_domain::paths::plugin_name(&s.id)
            .map_err(|_| invalid(format!("bad skill id {:?}", s.id)))?;
        for (rel, content) in &s.files {
            files.push((format!("skills/{}/{rel}", s.id), content.clone()));
        }
    }
    let files = files
        .into_iter()
        .map(|(p, c)| {
            RelPath::parse(&p)
                .map(|r| (r, c.into_bytes()))
                .map_err(|_| invalid(format!("bad file path {p:?}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let mut new = NewWorkspace::named(name);
    new.role = Some(b.description.clone()).filter(|d| !d.is_empty());
    new.tier = tier;
    new.runtime = runtime;
    out.push(Planned {
        parent,
        new,
        source_id: b.id.clone(),
        model: b.model.clone(),
        files,
    });
    let me = out.len() - 1;
    for child in &b.sub_workspaces {
        plan(child, Some(me), depth + 1, out)?;
    }
    Ok(())
}

/// `POST /bundles/import` (admin).
pub(crate) async fn import(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let bundle: Bundle =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("invalid bundle"))?;
    let mut planned = Vec::new();
    plan(&bundle, None, 0, &mut planned)?;
    let mut created: Vec<Workspace> = Vec::new();
    for p in &planned {
        let mut new = p.new.clone();
        new.parent_id = p.parent.and_then(|i| created.get(i)).map(|w| w.id);
        let result = state.store.workspaces().create(new).await;
        let ws = match result {
            Ok(ws) => ws,
            Err(e) => {
                if let Some(root) = created.first()
                    && let Err(r) = state.lifecycle.remove(root.id, true).await
                {
                    tracing::error!(workspace = %root.id, error = %r, "bundle import: rollback failed");
                }
                return Err(ApiError::internal(
                    "bundle import failed; nothing was created",
                    &e,
                ));
            }
        };
        if !p.source_id.is_empty()
            && let Err(e) = state
                .store
                .workspaces()
                .set_source_bundle_id(ws.id, &p.source_id)
                .await
        {
            tracing::warn!(workspace = %ws.id, error = %e, "bundle import: source id not stored");
        }
        crate::routes::secrets::store_model_choice(&state, ws.id, &p.model).await;
        created.push(ws);
    }
    let mut results: Vec<Value> = Vec::new();
    for (p, ws) in planned.into_iter().zip(&created) {
        state
            .events
            .emit(
                EventType::WorkspaceProvisioning,
                Some(ws.id),
                json!({ "name": ws.name, "tier": ws.tier, "source_bundle_id": p.source_id }),
            )
            .await;
        // Provisioning runs in the background; the answer does not wait for it.
        drop(state.lifecycle.spawn_provision_with_files(ws.id, p.files));
        results.push(json!({ "workspace_id": ws.id, "name": ws.name, "status": "provisioning" }));
    }
    Ok(ok_json(StatusCode::CREATED, nest(&created, &mut results)))
}

/// The flat results nested as the tree (`children`), root first.
fn nest(created: &[Workspace], results: &mut [Value]) -> Value {
    for i in (1..created.len()).rev() {
        let Some(parent) = created[i].parent_id else {
            continue;
        };
        let Some(pi) = created.iter().position(|w| w.id == parent) else {
            continue;
        };
        let child = results[i].take();
        let slot = &mut results[pi]["children"];
        if slot.is_null() {
            *slot = json!([]);
        }
        if let Some(list) = slot.as_array_mut() {
            list.insert(0, child);
        }
    }
    results.first().cloned().unwrap_or(Value::Null)
}
