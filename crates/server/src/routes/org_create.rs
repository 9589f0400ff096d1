//! Creating a planned org tree: every row (with its secrets, canvas position, memories,
//! schedules and channels) is inserted parents first; if any insert fails, everything created
//! so far is removed again through the lifecycle service (roll back, spec §2.5 #11), so a
//! failed import leaves no half-imported org. Only then are the events sent and the
//! workspaces provisioned, in the background, at most three at a time.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::{EventType, WorkspaceId, WorkspaceStatus};
use molecule_store::{NewChannel, NewSchedule, Secret, StoreError, Workspace};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ok_json};
use crate::org::plan::Node;
use crate::org::template::OrgTemplate;
use crate::state::AppState;

/// A created workspace and the files written into it before its start.
type ProvisionJob = (WorkspaceId, Vec<(molecule_domain::RelPath, Vec<u8>)>);

/// Provisions one import runs at once.
const PROVISION_CONCURRENCY: usize = 3;

/// The answer when an insert failed and the import was rolled back.
pub const IMPORT_FAILED: &str = "org import failed; nothing was created";

/// Creates the plan's rows and starts the tree; 201 with the created workspaces.
pub(crate) async fn create(
    state: &AppState,
    t: &OrgTemplate,
    plan: Vec<Node>,
) -> ApiResult<Response> {
    let mut created: Vec<Workspace> = Vec::new();
    let mut entries: Vec<Value> = Vec::new();
    let mut any_channel = false;
    for node in &plan {
        match insert(state, node, &created).await {
            Ok((ws, entry, channels)) => {
                any_channel |= channels;
                created.push(ws);
                entries.push(entry);
            }
            Err(e) => {
                tracing::error!(workspace = %node.new.name, error = %e, "org import: insert failed; rolling back");
                rollback(state, &created).await;
                return Err(ApiError::internal(IMPORT_FAILED, &e));
            }
        }
    }
    if let Some(first) = created.first()
        && !t.global_memories.is_empty()
    {
        let seeds: Vec<(String, String)> = t
            .global_memories
            .iter()
            .map(|m| (m.content.clone(), "GLOBAL".to_owned()))
            .collect();
        seed(state, first, &seeds).await;
    }
    if any_channel {
        state.channels.reload();
    }
    let mut jobs = Vec::new();
    for ((node, ws), entry) in plan.into_iter().zip(&created).zip(entries.iter_mut()) {
        let mut payload = json!({
            "name": ws.name, "tier": ws.tier, "runtime": ws.runtime,
            "x": node.rel.0, "y": node.rel.1,
        });
        if let Some(p) = ws.parent_id {
            payload["parent_id"] = json!(p);
        }
        state
            .events
            .emit(EventType::WorkspaceProvisioning, Some(ws.id), payload)
            .await;
        if node.external {
            if let Some(token) = start_external(state, ws, node.url.as_deref()).await {
                entry["auth_token"] = json!(token);
            }
        } else {
            jobs.push((ws.id, node.files));
        }
    }
    start_all(state, jobs);
    let count = entries.len();
    Ok(ok_json(
        StatusCode::CREATED,
        json!({ "org": t.name, "workspaces": entries, "count": count }),
    ))
}

/// Inserts one node: the row with its `.env` secrets, then its position, model choice,
/// memories, schedules and channels. Answers the row, its response entry, and whether it
/// has channels.
async fn insert(
    state: &AppState,
    node: &Node,
    created: &[Workspace],
) -> Result<(Workspace, Value, bool), StoreError> {
    let mut new = node.new.clone();
    new.parent_id = node.parent.and_then(|i| created.get(i)).map(|p| p.id);
    let secrets: Vec<(String, Secret)> = node
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
        .collect();
    let ws = state
        .store
        .workspaces()
        .create_with_secrets(new, &secrets)
        .await?;
    if let Err(e) = state
        .store
        .layouts()
        .upsert(ws.id, Some(node.abs), None)
        .await
    {
        tracing::warn!(workspace = %ws.id, error = %e, "org import: canvas position not stored");
    }
    crate::routes::secrets::store_model_choice(state, ws.id, &node.model).await;
    seed(state, &ws, &node.memories).await;
    for s in &node.schedules {
        let new = NewSchedule {
            workspace_id: ws.id,
            name: s.name.clone(),
            cron_expr: s.cron_expr.clone(),
            timezone: s.timezone.clone(),
            prompt: s.prompt.clone(),
            enabled: s.enabled,
            next_run_at: Some(s.next_run_at),
            source: "template".to_owned(),
        };
        match state.store.schedules().create(&new).await {
            Ok(_) | Err(StoreError::Duplicate) => {}
            Err(e) => return Err(e),
        }
    }
    let mut types = Vec::new();
    let mut skipped: Vec<Value> = node
        .channels_skipped
        .iter()
        .map(|(t, reason)| json!({ "workspace": ws.name, "type": t, "reason": reason }))
        .collect();
    for c in &node.channels {
        let new = NewChannel {
            workspace_id: ws.id,
            channel_type: c.channel_type.clone(),
            config: c.config.clone(),
            sensitive: c.sensitive.clone(),
            allowed_users: c.allowed_users.clone(),
            enabled: c.enabled,
        };
        match state.store.channels().create(&new).await {
            Ok(_) => types.push(c.channel_type.clone()),
            Err(StoreError::Duplicate) => skipped.push(json!({
                "workspace": ws.name, "type": c.channel_type,
                "reason": "duplicate channel type",
            })),
            Err(e) => return Err(e),
        }
    }
    let mut entry = json!({ "id": ws.id, "name": ws.name, "tier": ws.tier });
    let has_channels = !types.is_empty();
    if has_channels {
        entry["channels"] = json!(types);
    }
    if !skipped.is_empty() {
        entry["channels_skipped"] = json!(skipped);
    }
    Ok((ws, entry, has_channels))
}

/// Seeds memories (redacted by the store's seeding rules); a failure is logged.
async fn seed(state: &AppState, ws: &Workspace, seeds: &[(String, String)]) {
    if seeds.is_empty() {
        return;
    }
    let namespace = ws
        .awareness_namespace
        .clone()
        .unwrap_or_else(|| format!("workspace:{}", ws.id));
    if let Err(e) = state
        .store
        .memories()
        .seed(ws.id, ws.parent_id, &namespace, seeds)
        .await
    {
        tracing::warn!(workspace = %ws.id, error = %e, "org import: memories not seeded");
    }
}

/// Removes every created root (and so its subtree) again, rows purged.
async fn rollback(state: &AppState, created: &[Workspace]) {
    for ws in created.iter().rev().filter(|w| w.parent_id.is_none()) {
        if let Err(e) = state.lifecycle.remove(ws.id, true).await {
            tracing::error!(workspace = %ws.id, error = %e, "org import: rollback failed");
        }
    }
}

/// An external node: online at its URL (else awaiting its agent), with its auth token issued
/// now and answered once.
async fn start_external(state: &AppState, ws: &Workspace, url: Option<&str>) -> Option<String> {
    let workspaces = state.store.workspaces();
    let (status, event) = match url {
        Some(u) => {
            if let Err(e) = workspaces.set_url(ws.id, Some(u)).await {
                tracing::error!(workspace = %ws.id, error = %e, "org import: url not stored");
            }
            (WorkspaceStatus::Online, EventType::WorkspaceOnline)
        }
        None => (
            WorkspaceStatus::AwaitingAgent,
            EventType::WorkspaceAwaitingAgent,
        ),
    };
    if let Err(e) = workspaces.transition(ws.id, status, None).await {
        tracing::error!(workspace = %ws.id, error = %e, "org import: external status not set");
    }
    state
        .events
        .emit(
            event,
            Some(ws.id),
            json!({ "name": ws.name, "external": true }),
        )
        .await;
    match state.store.tokens().issue(ws.id).await {
        Ok(t) => Some(t.token.expose().to_owned()),
        Err(e) => {
            tracing::error!(workspace = %ws.id, error = %e, "org import: external token not issued");
            None
        }
    }
}

/// Provisions the created workspaces in the background, parents first, at most
/// [`PROVISION_CONCURRENCY`] at once; the request does not wait.
fn start_all(state: &AppState, jobs: Vec<ProvisionJob>) {
    if jobs.is_empty() {
        return;
    }
    let lifecycle = state.lifecycle.clone();
    tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(PROVISION_CONCURRENCY));
        for (id, files) in jobs {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let handle = lifecycle.spawn_provision_with_files(id, files);
            tokio::spawn(async move {
                let _ = handle.await;
                drop(permit);
            });
        }
    });
}
