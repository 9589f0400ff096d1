//! The registry: agents register, heartbeat and update their cards (`a2a.md` §1.5–1.6).
//! Registration never creates a workspace outside dev mode, and there needs a credential bound
//! to the workspace (Decision 2). An agent that registers is alive: any status but removed,
//! paused and hibernated becomes `online` (paused and hibernated are the operator's choice and
//! stay; the agent is registered without a status change).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use molecule_domain::{DeliveryMode, EventType, Runtime, WorkspaceId, WorkspaceStatus};
use molecule_store::{Heartbeat, NewWorkspace, Workspace};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::JsonBody;
use crate::state::AppState;

/// How long a registration waits for the backend start of its workspace to return.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The largest monthly spend a heartbeat may report, in cents.
const MAX_SPEND: i64 = 1_000_000_000_000;

fn parse_id(raw: Option<&str>) -> ApiResult<WorkspaceId> {
    raw.and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid request body"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Register {
    id: Option<String>,
    url: Option<String>,
    agent_card: Option<Value>,
    delivery_mode: Option<String>,
}

/// The platform inbound secret of a workspace, minted on first need.
async fn inbound_secret(state: &AppState, id: WorkspaceId) -> Option<String> {
    let workspaces = state.store.workspaces();
    match workspaces.inbound_secret(id).await {
        Ok(Some(s)) => return Some(s),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(workspace = %id, error = %e, "cannot read the inbound secret");
            return None;
        }
    }
    let secret = molecule_store::random_token().ok()?;
    match workspaces.set_inbound_secret(id, &secret).await {
        Ok(()) => Some(secret),
        Err(e) => {
            tracing::warn!(workspace = %id, error = %e, "cannot store the inbound secret");
            None
        }
    }
}

/// `POST /registry/register`.
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Register>,
) -> ApiResult<Response> {
    let id = parse_id(req.id.as_deref())?;
    let card = req
        .agent_card
        .filter(|c| !c.is_null())
        .ok_or_else(|| ApiError::bad_request("invalid request body"))?;
    let requested_mode = match req.delivery_mode.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(
            m.parse::<DeliveryMode>()
                .map_err(|_| ApiError::bad_request("delivery_mode must be 'push' or 'poll'"))?,
        ),
    };
    let workspaces = state.store.workspaces();
    let read = async || workspaces.get(id).await.or_internal("registration failed");
    // An id the server has never seen is 404 outside dev mode (Decision 2); in dev mode it is
    // a local agent onboarding itself: its external workspace is created below, once the
    // registration is known to be valid. Every other registration needs a credential bound
    // to the workspace: its token, or its one-time bootstrap token.
    let onboarding = match read().await? {
        None if state.security.dev_mode() => true,
        None => return Err(ApiError::not_found("workspace not found")),
        Some(_) => false,
    };
    let credential = if onboarding {
        auth::AgentCredential::Open
    } else {
        auth::agent_credential(&state, &headers, id, true).await?
    };
    // An agent can register before the start that runs it has returned and stored the URL
    // the backend published: let that start finish first (bounded), then read the row.
    if state.lifecycle.publishing_url_of(id) && !state.lifecycle.settled(id, START_WAIT).await {
        tracing::warn!(workspace = %id, "register: the backend start is still running");
    }
    let current: Option<Workspace> = if onboarding {
        None
    } else {
        let ws = read()
            .await?
            .filter(|w| !w.status.is_removed())
            .ok_or_else(|| ApiError::not_found("workspace not found"))?;
        Some(ws)
    };
    let mode = requested_mode
        .or(current.as_ref().map(|w| w.delivery_mode))
        .unwrap_or(DeliveryMode::Push);
    let url = req.url.filter(|u| !u.trim().is_empty());
    // A URL the platform published on loopback (a local container's port) wins over the
    // address the agent sees from inside its container; the agent's own is then not used.
    let kept = current
        .as_ref()
        .and_then(|w| w.url.as_deref())
        .filter(|u| u.starts_with("http://127.0.0.1"))
        .map(str::to_owned);
    // A workspace the backend is still starting gets its URL from the backend (which stores
    // it when its start returns, possibly after this registration): the agent's is not used.
    let published_later = kept.is_none() && state.lifecycle.publishing_url_of(id);
    if mode == DeliveryMode::Push {
        let Some(u) = &url else {
            return Err(ApiError::bad_request(
                "url is required for push-mode workspaces",
            ));
        };
        if kept.is_none() && !published_later {
            check_url(&state, u).await?;
        }
    }
    let stored_url = if published_later { None } else { kept.or(url) };
    // The bootstrap token is consumed only by a registration that is otherwise accepted, and
    // by one registration only.
    if let auth::AgentCredential::Bootstrap(token) = &credential
        && !state
            .store
            .tokens()
            .consume_bootstrap(id, token)
            .await
            .or_internal("registration failed")?
    {
        return Err(ApiError::unauthorized("invalid workspace auth token"));
    }
    if onboarding {
        onboard(&state, id, &card, mode).await?;
    }
    workspaces
        .record_registration(id, stored_url.as_deref(), &card, mode)
        .await
        .or_internal("registration failed")?
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    use WorkspaceStatus::*;
    match workspaces
        .transition(
            id,
            Online,
            Some(&[
                Provisioning,
                Online,
                Degraded,
                Offline,
                AwaitingAgent,
                Failed,
            ]),
        )
        .await
    {
        Ok(change) => {
            if change.from == Provisioning {
                crate::lifecycle::progress::emit(
                    &state.events,
                    id,
                    crate::lifecycle::progress::Step::Registration,
                    crate::lifecycle::progress::StepStatus::Done,
                )
                .await;
            }
            state
                .events
                .emit(
                    EventType::WorkspaceOnline,
                    Some(id),
                    json!({ "url": stored_url.unwrap_or_default(), "agent_card": card, "delivery_mode": mode }),
                )
                .await;
        }
        Err(e) => {
            tracing::info!(workspace = %id, error = %e, "registered without a status change");
        }
    }
    let mut reply = Map::new();
    reply.insert("status".into(), json!("registered"));
    reply.insert("delivery_mode".into(), json!(mode));
    let needs_token = match credential {
        auth::AgentCredential::Bootstrap(_) => Ok(true),
        _ => state.store.tokens().count_live(id).await.map(|n| n == 0),
    };
    match needs_token {
        Ok(true) => match state.store.tokens().issue(id).await {
            Ok(t) => {
                reply.insert("auth_token".into(), json!(t.token.expose()));
            }
            Err(e) => tracing::error!(workspace = %id, error = %e, "cannot issue the first token"),
        },
        Ok(false) => {}
        Err(e) => tracing::error!(workspace = %id, error = %e, "cannot count tokens"),
    }
    if let Some(secret) = inbound_secret(&state, id).await {
        reply.insert("platform_inbound_secret".into(), json!(secret));
    }
    Ok(ok_json(StatusCode::OK, Value::Object(reply)))
}

/// Dev mode: creates the external workspace of an agent that registers an id the server has
/// never seen (local onboarding, as the reference does), named after its card (or its id).
async fn onboard(
    state: &AppState,
    id: WorkspaceId,
    card: &Value,
    mode: DeliveryMode,
) -> ApiResult<()> {
    let name = card
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| molecule_domain::validation::name(n).is_ok())
        .map_or_else(|| id.to_string(), str::to_owned);
    let new = NewWorkspace {
        runtime: Runtime::external(),
        delivery_mode: mode,
        ..NewWorkspace::named(name.clone())
    };
    match state.store.workspaces().create_with_id(id, new).await {
        Ok(_) => {}
        // Another registration of the same id won the race: register into its row.
        Err(molecule_store::StoreError::Duplicate) => return Ok(()),
        Err(e) => return Err(ApiError::internal("registration failed", &e)),
    }
    tracing::info!(workspace = %id, "dev mode: an unknown agent registered; its workspace was created");
    state
        .events
        .emit(
            EventType::WorkspaceProvisioning,
            Some(id),
            json!({ "name": name, "tier": molecule_domain::Tier::DEFAULT.number(), "runtime": "external" }),
        )
        .await;
    Ok(())
}

/// An agent URL must pass the one address policy of the platform (the proxy checks it
/// again, against the addresses it connects to, before each delivery).
async fn check_url(state: &AppState, url: &str) -> ApiResult<()> {
    state
        .a2a
        .settings()
        .policy
        .check(url)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeartbeatBody {
    workspace_id: Option<String>,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    sample_error: String,
    #[serde(default)]
    active_tasks: i64,
    #[serde(default)]
    uptime_seconds: i64,
    #[serde(default)]
    current_task: String,
    #[serde(default)]
    monthly_spend: i64,
    #[serde(default)]
    runtime_state: String,
    runtime_metadata: Option<RuntimeMetadata>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeMetadata {
    #[serde(default)]
    capabilities: std::collections::HashMap<String, bool>,
    /// Any JSON: only a positive number of seconds means something (a wrong type is ignored,
    /// never a refused heartbeat).
    #[serde(default)]
    idle_timeout_seconds: Option<Value>,
}

/// The longest idle timeout a heartbeat may declare: a day.
const MAX_IDLE_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;

impl RuntimeMetadata {
    /// The declared idle timeout: a positive number of seconds (fractions dropped), at most
    /// [`MAX_IDLE_TIMEOUT_SECONDS`]; anything else is none.
    fn idle_timeout(&self) -> Option<std::time::Duration> {
        let seconds = self.idle_timeout_seconds.as_ref()?.as_f64()?;
        (seconds >= 1.0).then(|| {
            let whole = seconds.min(MAX_IDLE_TIMEOUT_SECONDS as f64) as u64;
            std::time::Duration::from_secs(whole)
        })
    }
}

fn clamp_i32(n: i64) -> i32 {
    i32::try_from(n.max(0)).unwrap_or(i32::MAX)
}

/// `POST /registry/heartbeat`.
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(hb): JsonBody<HeartbeatBody>,
) -> ApiResult<Response> {
    let id = parse_id(hb.workspace_id.as_deref())?;
    auth::agent_credential(&state, &headers, id, false).await?;
    let record = Heartbeat {
        error_rate: hb.error_rate,
        sample_error: Some(hb.sample_error.clone()).filter(|s| !s.is_empty()),
        active_tasks: clamp_i32(hb.active_tasks),
        uptime_seconds: clamp_i32(hb.uptime_seconds),
        current_task: Some(hb.current_task.clone()).filter(|s| !s.is_empty()),
        monthly_spend: Some(hb.monthly_spend.clamp(0, MAX_SPEND)).filter(|s| *s > 0),
    };
    let routing = state
        .store
        .workspaces()
        .record_heartbeat(id, &record)
        .await
        .or_internal("failed to update")?
        .ok_or_else(|| ApiError::not_found("workspace not found"))?;
    let before = &routing.workspace;
    let status_mgmt = hb
        .runtime_metadata
        .as_ref()
        .and_then(|m| m.capabilities.get("status_mgmt").copied())
        .unwrap_or(false);
    evaluate_status(&state, before, &hb, status_mgmt).await;
    let overrides = hb
        .runtime_metadata
        .as_ref()
        .map(|m| molecule_a2a::Overrides {
            capabilities: m
                .capabilities
                .iter()
                .filter(|(_, on)| **on)
                .map(|(name, _)| name.clone())
                .collect(),
            idle_timeout: m.idle_timeout(),
        })
        .unwrap_or_default();
    state.a2a.set_overrides(id, overrides);
    // A free task slot: deliver what waits in the queue (known from the cache when empty).
    if record.active_tasks < before.max_concurrent_tasks.max(1)
        && state
            .store
            .queue()
            .may_have_waiting(id)
            .await
            .unwrap_or(true)
    {
        state.a2a.spawn_drain(id);
    }
    if before.current_task.clone().unwrap_or_default() != hb.current_task {
        state.events.broadcast(
            EventType::TaskUpdated,
            Some(id),
            json!({ "current_task": hb.current_task, "active_tasks": record.active_tasks }),
        );
    }
    state.events.broadcast(
        EventType::WorkspaceHeartbeat,
        Some(id),
        json!({ "active_tasks": record.active_tasks, "uptime_seconds": record.uptime_seconds }),
    );
    let mut reply = Map::new();
    reply.insert("status".into(), json!("ok"));
    let secret = match &routing.inbound_secret {
        Some(known) => Some(known.clone()),
        None => inbound_secret(&state, id).await,
    };
    if let Some(secret) = secret {
        reply.insert("platform_inbound_secret".into(), json!(secret));
    }
    Ok(ok_json(StatusCode::OK, Value::Object(reply)))
}

/// The status changes a heartbeat causes (`a2a.md` §1.6).
async fn evaluate_status(
    state: &AppState,
    before: &Workspace,
    hb: &HeartbeatBody,
    status_mgmt: bool,
) {
    use WorkspaceStatus::*;
    let id = before.id;
    let workspaces = state.store.workspaces();
    let sample = hb.sample_error.clone();
    let (to, payload) = match before.status {
        Online if hb.runtime_state == "wedged" => (
            Degraded,
            json!({ "runtime_state": "wedged", "sample_error": sample }),
        ),
        Online if !status_mgmt && hb.error_rate >= 0.5 => (
            Degraded,
            json!({ "error_rate": hb.error_rate, "sample_error": sample }),
        ),
        Degraded if !status_mgmt && hb.error_rate < 0.1 && hb.runtime_state.is_empty() => {
            (Online, json!({}))
        }
        Offline => (Online, json!({})),
        Provisioning => (Online, json!({ "recovered_from": "provisioning" })),
        AwaitingAgent => (Online, json!({ "recovered_from": "awaiting_agent" })),
        _ => return,
    };
    match workspaces.transition(id, to, Some(&[before.status])).await {
        Ok(_) => {
            let event = if to == Online {
                EventType::WorkspaceOnline
            } else {
                EventType::WorkspaceDegraded
            };
            state.events.emit(event, Some(id), payload).await;
        }
        Err(e) => tracing::debug!(workspace = %id, error = %e, "heartbeat: no status change"),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct UpdateCard {
    workspace_id: Option<String>,
    agent_card: Option<Value>,
}

/// `POST /registry/update-card`.
pub(crate) async fn update_card(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<UpdateCard>,
) -> ApiResult<Response> {
    let id = parse_id(req.workspace_id.as_deref())?;
    let card = req
        .agent_card
        .filter(|c| !c.is_null())
        .ok_or_else(|| ApiError::bad_request("invalid request body"))?;
    auth::agent_credential(&state, &headers, id, false).await?;
    let found = state
        .store
        .workspaces()
        .set_agent_card(id, &card)
        .await
        .or_internal("failed to update card")?;
    if !found {
        return Err(ApiError::not_found("workspace not found"));
    }
    state
        .events
        .emit(
            EventType::AgentCardUpdated,
            Some(id),
            json!({ "agent_card": card }),
        )
        .await;
    Ok(ok_json(StatusCode::OK, json!({ "status": "updated" })))
}
