//! Workspace CRUD and operator operations (`lifecycle.md` §6).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use molecule_domain::{
    DeliveryMode, EventType, Runtime, Tier, WorkspaceAccess, WorkspaceId, WorkspaceStatus,
    validation,
};
use molecule_store::{NewWorkspace, StatusChange, StoreError, WorkspaceUpdate};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body;
use super::views;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ok_json, status_body};
use crate::lifecycle::{LifecycleError, RestartOutcome};

/// `POST /workspaces` body. Unknown fields are ignored; a field of the wrong type is a 400.
#[derive(Debug, Deserialize)]
struct CreateRequest {
    name: Option<String>,
    role: Option<String>,
    template: Option<String>,
    #[serde(default)]
    tier: i64,
    model: Option<String>,
    runtime: Option<String>,
    #[serde(default)]
    external: bool,
    url: Option<String>,
    delivery_mode: Option<String>,
    workspace_dir: Option<String>,
    workspace_access: Option<String>,
    parent_id: Option<String>,
    budget_limit: Option<i64>,
    #[serde(default)]
    secrets: SecretMap,
    max_concurrent_tasks: Option<i64>,
    canvas: Option<Canvas>,
    #[serde(default)]
    initial_memories: Vec<Value>,
    hibernation_idle_minutes: Option<i32>,
}

/// The `secrets` of a create body. Its `Debug` shows the keys only.
#[derive(Default, Deserialize)]
#[serde(transparent)]
struct SecretMap(std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[derive(Debug, Deserialize)]
struct Canvas {
    #[serde(default)]
    x: f64,
    #[serde(default)]
    y: f64,
}

/// Host directories a workspace may never mount.
const SYSTEM_DIRS: &[&str] = &[
    "/etc", "/var", "/proc", "/sys", "/dev", "/boot", "/sbin", "/bin", "/lib", "/usr",
];

/// An absolute host path without `..`, neither `/` nor equal to or under a system directory.
/// The check is on the path's components, so `//etc` and `/./etc` are `/etc` as they are for
/// the kernel (the string prefix check let them through).
fn valid_workspace_dir(dir: &str) -> bool {
    use std::path::Component;
    let path = std::path::Path::new(dir);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return false;
    }
    let first = path.components().find_map(|c| match c {
        Component::Normal(name) => name.to_str(),
        _ => None,
    });
    first.is_some_and(|first| {
        !SYSTEM_DIRS
            .iter()
            .any(|d| d.strip_prefix('/') == Some(first))
    })
}

fn valid_template(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Everything `POST /workspaces` checks before it writes anything.
pub(crate) struct Validated {
    pub(crate) new: NewWorkspace,
    pub(crate) secrets: Vec<(String, molecule_store::Secret)>,
    pub(crate) model: Option<String>,
    pub(crate) external: bool,
    pub(crate) url: Option<String>,
    pub(crate) canvas: Option<(f64, f64)>,
}

/// Parses and validates a `POST /workspaces` body: everything `create` does before it writes.
pub(crate) fn parse_create(body: &Bytes) -> ApiResult<Validated> {
    let request: CreateRequest = body::json(body, "invalid workspace payload")?;
    validate_create(request)
}

fn validate_create(req: CreateRequest) -> ApiResult<Validated> {
    let name = req
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid workspace payload"))?;
    let fields = || ApiError::bad_request("invalid workspace fields");
    validation::name(&name).map_err(|_| fields())?;
    if let Some(role) = &req.role {
        validation::role(role).map_err(|_| fields())?;
    }
    if let Some(model) = &req.model {
        validation::model(model).map_err(|_| fields())?;
    }
    let runtime = match req
        .runtime
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        None => Runtime::default_runtime(),
        Some(r) => {
            let rt = Runtime::new(r).map_err(|_| fields())?;
            if !Runtime::BUILTIN.contains(&rt.as_str()) {
                return Err(ApiError::bad_request(format!("unknown runtime \"{rt}\"")));
            }
            rt
        }
    };
    if let Some(t) = &req.template
        && !valid_template(t)
    {
        return Err(ApiError::bad_request("invalid template"));
    }
    let tier = Tier::from_request(req.tier)
        .map_err(|_| ApiError::bad_request("tier must be between 1 and 4"))?;
    let workspace_dir = req.workspace_dir.filter(|d| !d.is_empty());
    if let Some(dir) = &workspace_dir
        && !valid_workspace_dir(dir)
    {
        return Err(ApiError::bad_request("invalid workspace directory"));
    }
    let access = match req.workspace_access.as_deref().filter(|a| !a.is_empty()) {
        None => WorkspaceAccess::None,
        Some(a) => a
            .parse::<WorkspaceAccess>()
            .map_err(|_| ApiError::bad_request("invalid workspace access"))?,
    };
    if access.needs_directory() && workspace_dir.is_none() {
        return Err(ApiError::bad_request("invalid workspace access"));
    }
    let delivery_mode = match req.delivery_mode.as_deref().filter(|m| !m.is_empty()) {
        None => DeliveryMode::Push,
        Some(m) => m
            .parse::<DeliveryMode>()
            .map_err(|_| ApiError::bad_request("delivery_mode must be 'push' or 'poll'"))?,
    };
    let parent_id = match req.parent_id.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            p.parse::<WorkspaceId>()
                .map_err(|_| ApiError::bad_request("invalid parent_id"))?,
        ),
    };
    if req.hibernation_idle_minutes.is_some_and(|m| m < 0) {
        return Err(ApiError::bad_request(
            "hibernation_idle_minutes must be >= 0",
        ));
    }
    if req.budget_limit.is_some_and(|b| b < 0) {
        return Err(ApiError::bad_request(
            "budget_limit must be >= 0 (USD cents)",
        ));
    }
    for key in req.secrets.0.keys() {
        validation::env_key(key).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if !req.initial_memories.is_empty() {
        return Err(ApiError::bad_request(
            "initial_memories are not supported on this server yet",
        ));
    }
    let external = req.external || runtime.is_external();
    let max_concurrent = req
        .max_concurrent_tasks
        .filter(|n| *n > 0)
        .map_or(1, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let url = req.url.filter(|u| !u.trim().is_empty());
    if external
        && let Some(u) = &url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(ApiError::bad_request("url scheme must be http or https"));
    }
    Ok(Validated {
        secrets: req
            .secrets
            .0
            .into_iter()
            .map(|(k, v)| (k, molecule_store::Secret::new(v)))
            .collect(),
        model: req
            .model
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty()),
        new: NewWorkspace {
            name,
            role: req.role,
            tier,
            runtime: if external {
                Runtime::external()
            } else {
                runtime
            },
            parent_id,
            workspace_dir,
            workspace_access: access,
            delivery_mode,
            budget_limit: req.budget_limit,
            max_concurrent_tasks: max_concurrent,
            hibernation_idle_minutes: req.hibernation_idle_minutes.filter(|m| *m > 0),
        },
        external,
        url,
        canvas: req.canvas.map(|c| (c.x, c.y)),
    })
}

/// `POST /workspaces` (admin).
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let v = parse_create(&body)?;
    let created = state
        .store
        .workspaces()
        .create_with_secrets(v.new, &v.secrets)
        .await;
    let ws = match created {
        Ok(ws) => ws,
        Err(StoreError::ParentNotFound) => {
            return Err(ApiError::bad_request("parent workspace not found"));
        }
        Err(StoreError::SecretWrite {
            ref key, encrypt, ..
        }) => {
            let what = if encrypt { "encrypt" } else { "save" };
            let message = format!("failed to {what} secret: {key}");
            return Err(ApiError::internal(
                &message,
                &created.err().map_or(String::new(), |e| e.to_string()),
            ));
        }
        Err(e) => return Err(ApiError::internal("failed to create workspace", &e)),
    };
    if let Some(model) = &v.model {
        super::secrets::store_model_choice(&state, ws.id, model).await;
    }
    if let Some(position) = v.canvas
        && let Err(e) = state
            .store
            .layouts()
            .upsert(ws.id, Some(position), None)
            .await
    {
        tracing::warn!(workspace = %ws.id, error = %e, "cannot store the canvas position");
    }
    state
        .events
        .emit(
            EventType::WorkspaceProvisioning,
            Some(ws.id),
            json!({ "name": ws.name, "tier": ws.tier, "runtime": ws.runtime }),
        )
        .await;
    if v.external {
        return create_external(&state, &headers, ws, v.url).await;
    }
    let handle = state.lifecycle.spawn_provision(ws.id);
    let mut status = WorkspaceStatus::Provisioning;
    if !state.lifecycle.has_backend() {
        // The outcome is known at once: say it rather than "provisioning".
        let _ = handle.await;
        status = WorkspaceStatus::Failed;
    }
    Ok(ok_json(
        StatusCode::CREATED,
        json!({
            "id": ws.id,
            "status": status,
            "awareness_namespace": ws.awareness_namespace,
            "workspace_access": ws.workspace_access,
        }),
    ))
}

/// An external workspace: `online` at once with a `url`, else `awaiting_agent`. Either way
/// it gets its auth token now, shown only in this answer's `connection` (Decision 2: no
/// tokenless registration; the agent registers with it).
async fn create_external(
    state: &AppState,
    headers: &HeaderMap,
    ws: molecule_store::Workspace,
    url: Option<String>,
) -> ApiResult<Response> {
    let workspaces = state.store.workspaces();
    let failed = |e: StoreError| ApiError::internal("failed to create workspace", &e);
    let (status, event) = match &url {
        Some(url) => {
            workspaces.set_url(ws.id, Some(url)).await.map_err(failed)?;
            (WorkspaceStatus::Online, EventType::WorkspaceOnline)
        }
        None => (
            WorkspaceStatus::AwaitingAgent,
            EventType::WorkspaceAwaitingAgent,
        ),
    };
    workspaces
        .transition(ws.id, status, None)
        .await
        .map_err(failed)?;
    let token = match state.store.tokens().issue(ws.id).await {
        Ok(t) => t.token.expose().to_owned(),
        Err(e) => {
            tracing::error!(workspace = %ws.id, error = %e, "cannot issue the external token");
            String::new()
        }
    };
    state
        .events
        .emit(
            event,
            Some(ws.id),
            json!({ "name": ws.name, "external": true }),
        )
        .await;
    Ok(ok_json(
        StatusCode::CREATED,
        json!({
            "id": ws.id,
            "external": true,
            "status": status,
            "connection": connection(headers, &ws, &token),
        }),
    ))
}

/// The `connection` block of an external workspace's create answer.
fn connection(headers: &HeaderMap, ws: &molecule_store::Workspace, token: &str) -> Value {
    let platform = super::request_origin(headers);
    let id = ws.id;
    let curl = format!(
        "curl -X POST {platform}/registry/register -H 'Authorization: Bearer {{{{AUTH_TOKEN}}}}' \
         -H 'Content-Type: application/json' -d '{{\"id\":\"{id}\",\"url\":\"<your agent URL>\",\
         \"agent_card\":{{\"name\":\"{name}\"}}}}'",
        name = ws.name
    );
    json!({
        "workspace_id": id,
        "platform_url": platform,
        "auth_token": token,
        "registry_endpoint": format!("{platform}/registry/register"),
        "heartbeat_endpoint": format!("{platform}/registry/heartbeat"),
        "curl_register_template": curl,
    })
}

/// `GET /workspaces` (admin).
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let all = state
        .store
        .workspaces()
        .list()
        .await
        .map_err(|e| ApiError::internal("query failed", &e))?;
    let layouts = state
        .store
        .layouts()
        .all()
        .await
        .map_err(|e| ApiError::internal("query failed", &e))?;
    let items: Vec<Value> = all
        .iter()
        .map(|ws| views::list_item(ws, layouts.get(&ws.id).copied()))
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

/// `GET /workspaces/:id` (public).
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let ws = state
        .store
        .workspaces()
        .get(id)
        .await
        .map_err(|e| ApiError::internal("query failed", &e))?
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    if ws.status.is_removed() && query.get("include_removed").map(String::as_str) != Some("true") {
        return Err(ApiError::new(StatusCode::GONE, "workspace removed")
            .with("id", id.to_string())
            .with("removed_at", views::rfc3339(ws.updated_at))
            .with(
                "hint",
                "Regenerate workspace + token from the canvas → Tokens tab",
            ));
    }
    let layout = state
        .store
        .layouts()
        .get(id)
        .await
        .map_err(|e| ApiError::internal("query failed", &e))?;
    Ok(ok_json(StatusCode::OK, views::detail(&ws, layout)))
}

fn string_field(map: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// Reads a nullable field: absent → `None`, null → `Some(None)`.
fn nullable<T>(
    map: &Map<String, Value>,
    key: &str,
    parse: impl Fn(&Value) -> Option<T>,
    message: &str,
) -> ApiResult<Option<Option<T>>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => parse(v)
            .map(|t| Some(Some(t)))
            .ok_or_else(|| ApiError::bad_request(message)),
    }
}

/// `PATCH /workspaces/:id` (workspace auth): every field is checked first, then all are
/// applied in one transaction.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let map: Map<String, Value> = body::json(&body, "invalid request body")?;
    let mut changes = WorkspaceUpdate::default();
    if let Some(name) = string_field(&map, "name")? {
        validation::name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        changes.name = Some(name);
    }
    if let Some(role) = nullable(
        &map,
        "role",
        |v| v.as_str().map(str::to_owned),
        "role must be a string",
    )? {
        if let Some(r) = &role {
            validation::role(r).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        changes.role = Some(role);
    }
    if let Some(runtime) = string_field(&map, "runtime")? {
        let rt = Runtime::new(runtime).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !Runtime::BUILTIN.contains(&rt.as_str()) {
            return Err(ApiError::bad_request(format!("unknown runtime \"{rt}\"")));
        }
        changes.runtime = Some(rt);
    }
    if let Some(tier) = map.get("tier") {
        let t = tier
            .as_i64()
            .and_then(|n| Tier::try_from(n).ok())
            .ok_or_else(|| ApiError::bad_request("tier must be between 1 and 4"))?;
        changes.tier = Some(t);
    }
    if let Some(parent) = nullable(
        &map,
        "parent_id",
        |v| v.as_str().and_then(|s| s.parse::<WorkspaceId>().ok()),
        "invalid parent_id",
    )? {
        changes.parent_id = Some(parent);
    }
    let dir_present = map.contains_key("workspace_dir");
    if let Some(dir) = nullable(
        &map,
        "workspace_dir",
        |v| v.as_str().map(str::to_owned),
        "invalid workspace directory",
    )? {
        let dir = dir.filter(|d| !d.is_empty());
        if let Some(d) = &dir
            && !valid_workspace_dir(d)
        {
            return Err(ApiError::bad_request("invalid workspace directory"));
        }
        changes.workspace_dir = Some(dir);
    }
    if let Some(minutes) = nullable(
        &map,
        "hibernation_idle_minutes",
        |v| {
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n >= 0)
        },
        "hibernation_idle_minutes must be a whole number >= 0 or null",
    )? {
        changes.hibernation_idle_minutes = Some(minutes.filter(|m| *m > 0));
    }
    if let Some(collapsed) = map.get("collapsed") {
        changes.collapsed = Some(
            collapsed
                .as_bool()
                .ok_or_else(|| ApiError::bad_request("collapsed must be a boolean"))?,
        );
    }
    match (map.get("x"), map.get("y")) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else {
                return Err(ApiError::bad_request("x and y must be numbers"));
            };
            changes.position = Some((x, y));
        }
        _ => return Err(ApiError::bad_request("x and y must be given together")),
    }
    match state.store.workspaces().update(id, changes).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(ApiError::not_found("workspace not found")),
        Err(StoreError::ParentNotFound) => {
            return Err(ApiError::bad_request("parent workspace not found"));
        }
        Err(StoreError::ParentCycle) => {
            return Err(ApiError::bad_request("parent_id would create a cycle"));
        }
        Err(e) => return Err(ApiError::internal("update failed", &e)),
    }
    let mut reply = status_body("updated");
    if dir_present && let Some(obj) = reply.as_object_mut() {
        obj.insert("needs_restart".to_owned(), Value::Bool(true));
    }
    Ok(ok_json(StatusCode::OK, reply))
}

/// `DELETE /workspaces/:id?confirm=true&purge=true` (admin).
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let confirm = query.get("confirm").map(String::as_str) == Some("true");
    let purge = query.get("purge").map(String::as_str) == Some("true");
    let children = state
        .store
        .workspaces()
        .children(id)
        .await
        .map_err(|e| ApiError::internal("failed to check children", &e))?;
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
    let outcome = state
        .lifecycle
        .remove(id, purge)
        .await
        .map_err(lifecycle_error)?;
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

/// Maps a lifecycle refusal to the spec's status and message.
pub(crate) fn lifecycle_error(e: LifecycleError) -> ApiError {
    match e {
        LifecycleError::NotFound => ApiError::not_found("workspace not found"),
        LifecycleError::ParentPaused(_) => ApiError::conflict(e.to_string()),
        LifecycleError::NoBackend => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "provisioner not available")
        }
        LifecycleError::WrongState(message) => ApiError::not_found(message),
        LifecycleError::Conflict(message) => ApiError::conflict(message),
        LifecycleError::BackendFailed(message) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
        LifecycleError::ActiveTasks(n) => ApiError::conflict(e.to_string()).with("active_tasks", n),
        LifecycleError::Store(inner) => ApiError::internal("lookup failed", &inner),
    }
}

/// `GET /workspaces/:id/state` (workspace auth).
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let ws = state
        .store
        .workspaces()
        .get(id)
        .await
        .map_err(|e| ApiError::internal("query failed", &e))?;
    Ok(match ws {
        None => ok_json(
            StatusCode::NOT_FOUND,
            json!({ "workspace_id": id, "deleted": true }),
        ),
        Some(ws) if ws.status.is_removed() => ok_json(
            StatusCode::NOT_FOUND,
            json!({ "workspace_id": id, "status": "removed", "deleted": true }),
        ),
        Some(ws) => ok_json(
            StatusCode::OK,
            json!({
                "workspace_id": id,
                "status": ws.status,
                "paused": ws.status == WorkspaceStatus::Paused,
                "deleted": false,
            }),
        ),
    })
}

/// `POST /workspaces/:id/restart` (workspace auth).
pub(crate) async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    // The body is optional and its parse errors are ignored, as in the reference.
    let options = body::object(&body, "invalid request body").unwrap_or_default();
    let reset = query.get("reset").map(String::as_str) == Some("true")
        || options.get("reset").and_then(Value::as_bool) == Some(true);
    match state.lifecycle.restart(id).await.map_err(lifecycle_error)? {
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
            json!({ "status": "provisioning", "config_dir": "volume", "reset_session": reset }),
        )),
    }
}

/// `POST /workspaces/:id/pause` (workspace auth).
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let outcome = state.lifecycle.pause(id).await.map_err(|e| match e {
        LifecycleError::NotFound => ApiError::not_found("workspace not found or already paused"),
        other => lifecycle_error(other),
    })?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "paused", "paused_count": outcome.count }),
    ))
}

/// `POST /workspaces/:id/resume` (workspace auth).
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let outcome = state.lifecycle.resume(id).await.map_err(|e| match e {
        LifecycleError::NotFound => ApiError::not_found("workspace not found or not paused"),
        other => lifecycle_error(other),
    })?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "provisioning", "resumed_count": outcome.count }),
    ))
}

/// `POST /workspaces/:id/hibernate?force=true` (workspace auth).
pub(crate) async fn hibernate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let force = query.get("force").map(String::as_str) == Some("true");
    state
        .lifecycle
        .hibernate(id, force)
        .await
        .map_err(|e| match e {
            LifecycleError::NotFound => ApiError::not_found(
                "workspace not found or not in a hibernatable state (must be online or degraded)",
            ),
            other => lifecycle_error(other),
        })?;
    Ok(ok_json(StatusCode::OK, status_body("hibernated")))
}

/// `GET /workspaces/:id/budget` (workspace auth).
pub(crate) async fn budget(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let ws = state
        .store
        .workspaces()
        .get(id)
        .await
        .map_err(|e| ApiError::internal("query failed", &e))?
        .filter(|w| !w.status.is_removed())
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    Ok(ok_json(StatusCode::OK, views::budget(&ws)))
}

/// `PATCH /workspaces/:id/budget` (admin).
pub(crate) async fn set_budget(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    let map: Map<String, Value> = body::json(&body, "invalid request body")?;
    let limit = match map.get("budget_limit") {
        None => return Err(ApiError::bad_request("budget_limit field is required")),
        Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let v = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.trunc() as i64)
                })
                .ok_or_else(|| {
                    ApiError::bad_request("budget_limit must be an integer (USD cents) or null")
                })?;
            if v < 0 {
                return Err(ApiError::bad_request(
                    "budget_limit must be >= 0 (USD cents)",
                ));
            }
            Some(v)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "budget_limit must be an integer (USD cents) or null",
            ));
        }
    };
    let found = state
        .store
        .workspaces()
        .set_budget_limit(id, limit)
        .await
        .map_err(|e| ApiError::internal("update failed", &e))?;
    if !found {
        return Err(ApiError::not_found("workspace not found"));
    }
    match state.store.workspaces().get(id).await {
        Ok(Some(ws)) => Ok(ok_json(StatusCode::OK, views::budget(&ws))),
        _ => Ok(ok_json(StatusCode::OK, status_body("updated"))),
    }
}

/// `GET /workspaces/:id/console` (admin): the console output of the workspace's compute.
pub(crate) async fn console(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    match state.lifecycle.console(id).await.map_err(|e| match e {
        LifecycleError::BackendFailed(message) => ApiError::new(StatusCode::BAD_GATEWAY, message),
        other => lifecycle_error(other),
    })? {
        Some(output) => Ok(ok_json(StatusCode::OK, json!({ "output": output }))),
        None => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "console output unavailable on this deployment",
        )),
    }
}

/// `POST /admin/workspaces/:id/bootstrap-failed` (admin).
pub(crate) async fn bootstrap_failed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = body::workspace_id(&id)?;
    #[derive(Deserialize)]
    struct Report {
        #[serde(default)]
        error: String,
        #[serde(default)]
        log_tail: String,
    }
    let report: Report = body::json(&body, "invalid request body")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &[u8]) -> String {
        match parse_create(&Bytes::copy_from_slice(body)) {
            Ok(_) => panic!("accepted {}", String::from_utf8_lossy(body)),
            Err(e) => {
                assert_eq!(e.status(), StatusCode::BAD_REQUEST);
                format!("{e:?}")
            }
        }
    }

    /// Inputs of the `create_validation` fuzz target (fuzz/): a system directory spelled with
    /// an empty or `.` component passed the string prefix check.
    #[test]
    fn system_directories_are_refused_however_spelled() {
        for body in [
            &br#"{"name":"x","workspace_dir":"//etc"}"#[..],
            br#"{"name":"x","workspace_dir":"/./etc"}"#,
            br#"{"name":"x","workspace_dir":"//proc/self"}"#,
            br#"{"name":"x","workspace_dir":"/usr//"}"#,
            br#"{"name":"x","workspace_dir":"//"}"#,
            br#"{"name":"x","workspace_dir":"/."}"#,
            br#"{"name":"x","workspace_dir":"/etc"}"#,
            br#"{"name":"x","workspace_dir":"/var/lib/x"}"#,
            br#"{"name":"x","workspace_dir":"/home/../etc"}"#,
            br#"{"name":"x","workspace_dir":"home/x"}"#,
        ] {
            assert!(
                refusal(body).contains("invalid workspace directory"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn ordinary_directories_pass() {
        for dir in [
            "/home/user/project",
            "/etcetera",
            "/srv/./data",
            "/opt//x",
            "/usr2",
        ] {
            assert!(valid_workspace_dir(dir), "{dir}");
        }
    }
}
