//! `POST /workspaces`: validate everything, then create the row with its secrets, then
//! provision it (or, for an external workspace, issue its token and say how to connect).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use molecule_domain::{
    DeliveryMode, EventType, Runtime, Tier, WorkspaceAccess, WorkspaceId, WorkspaceStatus,
    validation,
};
use molecule_store::{NewWorkspace, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ok_json};
use crate::routes::body;
use crate::state::AppState;
use crate::templates::source;

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

/// Everything `POST /workspaces` checks before it writes anything.
pub(crate) struct Validated {
    pub(crate) new: NewWorkspace,
    pub(crate) secrets: Vec<(String, molecule_store::Secret)>,
    pub(crate) model: Option<String>,
    pub(crate) external: bool,
    pub(crate) url: Option<String>,
    pub(crate) canvas: Option<(f64, f64)>,
    /// The template's memories to seed: `(content, scope)` as given.
    pub(crate) initial_memories: Vec<(String, String)>,
    /// The template directory's name under the configs directory, as given (checked).
    pub(crate) template: Option<String>,
    /// Whether the request named the runtime (else a template may fill it in).
    pub(crate) runtime_given: bool,
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
    let runtime_given = req.runtime.as_deref().is_some_and(|r| !r.trim().is_empty());
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
    let template = req.template.filter(|t| !t.is_empty());
    if let Some(t) = &template {
        validation::template_name(t)?;
    }
    let tier = Tier::from_request(req.tier)
        .map_err(|_| ApiError::bad_request("tier must be between 1 and 4"))?;
    let workspace_dir = req.workspace_dir.filter(|d| !d.is_empty());
    if let Some(dir) = &workspace_dir {
        validation::workspace_dir(dir)?;
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
        validation::env_key(key)?;
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
        initial_memories: req
            .initial_memories
            .iter()
            .map(|m| {
                let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                (text("content"), text("scope"))
            })
            .collect(),
        template,
        runtime_given,
    })
}

/// `POST /workspaces` (admin).
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let mut v = parse_create(&body)?;
    let files = config_source(&state, &mut v).await?;
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
        crate::routes::secrets::store_model_choice(&state, ws.id, model).await;
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
    seed_memories(&state, &ws, &v.initial_memories).await;
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
    let handle = state.lifecycle.spawn_provision_with_files(ws.id, files);
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

/// Fills the runtime and model a template names when the request leaves them out, then reads
/// the files the workspace's config root starts from (spec lifecycle §6.1): the template's,
/// else `<runtime>-default`'s, else a generated `config.yaml`. Nothing for an external one.
async fn config_source(
    state: &AppState,
    v: &mut Validated,
) -> ApiResult<Vec<(molecule_domain::RelPath, Vec<u8>)>> {
    let configs = state.configs_dir.clone();
    let template_dir = match (&configs, &v.template) {
        (Some(c), Some(t)) => source::template_dir(c, t),
        _ => None,
    };
    if let Some(dir) = template_dir.clone()
        && (!v.runtime_given || v.model.is_none())
    {
        let found = tokio::task::spawn_blocking(move || source::defaults(&dir))
            .await
            .unwrap_or_default();
        if !v.runtime_given
            && !v.external
            && let Some(runtime) = found.runtime
        {
            match Runtime::new(&runtime) {
                Ok(rt) if Runtime::BUILTIN.contains(&rt.as_str()) => v.new.runtime = rt,
                _ => tracing::warn!(%runtime, "template names an unknown runtime; ignored"),
            }
        }
        if v.model.is_none() && validation::model(found.model.as_deref().unwrap_or("")).is_ok() {
            v.model = found.model;
        }
    }
    if v.external {
        return Ok(Vec::new());
    }
    let (template, name, role, tier, runtime, model) = (
        v.template.clone(),
        v.new.name.clone(),
        v.new.role.clone(),
        v.new.tier.number(),
        v.new.runtime.to_string(),
        v.model.clone(),
    );
    let read = tokio::task::spawn_blocking(move || {
        let who = source::Identity {
            name: &name,
            role: role.as_deref(),
            tier,
            runtime: &runtime,
            model: model.as_deref(),
        };
        source::config_files(
            configs.as_deref().map(|c| c.as_path()),
            template.as_deref(),
            &who,
        )
    })
    .await;
    match read {
        Ok(Ok(files)) => Ok(files),
        Ok(Err(source::SourceError::TooLarge)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "template too large (at most {} files, {} MiB)",
                source::MAX_FILES,
                source::MAX_BYTES / (1024 * 1024)
            ),
        )),
        Ok(Err(e)) => Err(ApiError::internal("failed to read template", &e)),
        Err(e) => Err(ApiError::internal("failed to read template", &e)),
    }
}

/// Seeds the template's `initial_memories` into the awareness namespace (redacted, by the
/// seeding rules of `Memories::seed`); a failure is logged, never fatal.
async fn seed_memories(
    state: &AppState,
    ws: &molecule_store::Workspace,
    seeds: &[(String, String)],
) {
    if seeds.is_empty() {
        return;
    }
    let namespace = ws
        .awareness_namespace
        .clone()
        .unwrap_or_else(|| format!("workspace:{}", ws.id));
    match state
        .store
        .memories()
        .seed(ws.id, ws.parent_id, &namespace, seeds)
        .await
    {
        Ok(n) => tracing::info!(workspace = %ws.id, seeded = n, "initial memories seeded"),
        Err(e) => tracing::warn!(workspace = %ws.id, error = %e, "cannot seed initial memories"),
    }
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
            "connection": super::external::connection(state, headers, &ws, &token),
        }),
    ))
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
}
