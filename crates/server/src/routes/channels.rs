//! Chat channels (spec: scheduler-channels-mcp §6.2): the adapter list, CRUD of a
//! workspace's channels, send, test and Telegram discovery. Every route that names a channel
//! is scoped to the workspace in the path (spec §D5). Configs are validated before anything
//! is written, also on PATCH, which merges into the stored config and keeps values sent back
//! masked (§D17); every sensitive field is sealed at rest and masked when listed (§D6).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::WorkspaceId;
use molecule_store::{Channel, ChannelUpdate, NewChannel, StoreError};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::channels::adapter::{self, Adapter, Config, mask};
use crate::channels::{ADAPTERS, OutboundError, telegram};
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, ok_list, status_body};
use crate::extract::WorkspacePath;
use crate::state::AppState;

/// The text of `…/test`.
pub const TEST_MESSAGE: &str = "🔔 Molecule AI channel test — connection successful!";

fn ts(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn sensitive_keys(a: &dyn Adapter) -> Vec<String> {
    a.config_schema()
        .iter()
        .filter(|f| f.sensitive)
        .map(|f| f.key.to_owned())
        .collect()
}

/// A channel as listed: every sensitive value masked.
fn view(c: &Channel) -> Value {
    let mut config = c.config.clone();
    if let Some(a) = crate::channels::adapter(&c.channel_type) {
        for key in sensitive_keys(a) {
            if let Some(Value::String(s)) = config.get_mut(&key)
                && !s.is_empty()
            {
                *s = mask(s);
            }
        }
    }
    let mut v = json!({
        "id": c.id, "workspace_id": c.workspace_id, "channel_type": c.channel_type,
        "config": config, "enabled": c.enabled, "allowed_users": c.allowed_users,
        "message_count": c.message_count, "channel_budget": c.channel_budget,
        "created_at": ts(Some(c.created_at)), "updated_at": ts(Some(c.updated_at)),
    });
    if c.last_message_at.is_some() {
        v["last_message_at"] = ts(c.last_message_at);
    }
    v
}

fn channel_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::not_found("channel not found"))
}

fn invalid_config(e: &adapter::AdapterError) -> ApiError {
    ApiError::bad_request(format!("invalid channel config: {e}"))
}

/// The allowlist of a body: ids as strings or numbers.
fn allowed_users(v: &Value) -> ApiResult<Vec<String>> {
    let refuse = || ApiError::bad_request("allowed_users must be a list of user or chat ids");
    let items = v.as_array().ok_or_else(refuse)?;
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.trim().to_owned()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(refuse()),
        })
        .collect()
}

fn config_of(v: Option<&Value>) -> ApiResult<Config> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request(
            "invalid channel config: config must be an object",
        )),
    }
}

/// `GET /channels/adapters`.
pub(crate) async fn adapters() -> Response {
    ok_list(&ADAPTERS, |a| {
        json!({
            "type": a.channel_type(), "display_name": a.display_name(),
            "config_schema": a.config_schema().iter().map(|f| f.to_json()).collect::<Vec<_>>(),
        })
    })
}

/// `GET /workspaces/:id/channels`.
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let rows = state
        .store
        .channels()
        .list(id)
        .await
        .or_internal("query failed")?;
    for c in rows.iter().filter(|c| c.config_error.is_some()) {
        tracing::warn!(channel = %c.id, "channels: a sealed config value cannot be opened");
    }
    Ok(ok_list(&rows, view))
}

/// `POST /workspaces/:id/channels` `{channel_type, config, allowed_users?, enabled?}`.
pub(crate) async fn create(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    body: Bytes,
) -> ApiResult<Response> {
    let body: Map<String, Value> = super::body::json(&body, "invalid JSON")?;
    let channel_type = body
        .get("channel_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    if channel_type.is_empty() {
        return Err(ApiError::bad_request("channel_type is required"));
    }
    let Some(a) = crate::channels::adapter(channel_type) else {
        return Err(ApiError::bad_request(format!(
            "unsupported channel_type: {channel_type}"
        )));
    };
    let config = config_of(body.get("config"))?;
    a.validate_config(&state.channels.ctx().endpoints, &config)
        .map_err(|e| invalid_config(&e))?;
    let users = match body.get("allowed_users") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => allowed_users(v)?,
    };
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("enabled must be a boolean")),
    };
    super::live_workspace(&state, id, "failed to create channel").await?;
    let new = NewChannel {
        workspace_id: id,
        channel_type: channel_type.to_owned(),
        config,
        sensitive: sensitive_keys(a),
        allowed_users: users,
        enabled,
    };
    let created = state
        .store
        .channels()
        .create(&new)
        .await
        .map_err(|e| match e {
            StoreError::Duplicate => {
                ApiError::conflict(format!("workspace already has a {channel_type} channel"))
            }
            StoreError::NotFound => ApiError::not_found("workspace not found"),
            StoreError::Cipher(e) => ApiError::internal("encrypt failed", &e),
            e => ApiError::internal("failed to create channel", &e),
        })?;
    state.channels.reload();
    Ok(ok_json(
        StatusCode::CREATED,
        json!({"id": created.id, "channel_type": created.channel_type, "enabled": created.enabled}),
    ))
}

/// The stored config with a PATCH's keys applied: `null` removes a key, and a sensitive
/// value sent back as its own mask (or `***`) keeps the stored value.
fn merge(stored: &Config, patch: Config, sensitive: &[String]) -> Config {
    let mut merged = stored.clone();
    for (key, value) in patch {
        match value {
            Value::Null => {
                merged.remove(&key);
            }
            Value::String(s) if sensitive.contains(&key) => {
                let old = stored.get(&key).and_then(Value::as_str).unwrap_or("");
                let echoed = !old.is_empty() && (s == mask(old) || s == "***");
                if !echoed {
                    merged.insert(key, Value::String(s));
                }
            }
            other => {
                merged.insert(key, other);
            }
        }
    }
    merged
}

/// `PATCH /workspaces/:id/channels/:channelId` `{config?, allowed_users?, enabled?,
/// channel_budget?}`.
pub(crate) async fn update(
    State(state): State<AppState>,
    WorkspacePath(ws): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: Map<String, Value> = super::body::json(&body, "invalid JSON")?;
    let id = channel_id(&raw)?;
    let store = state.store.channels();
    let channel = store
        .get(ws, id)
        .await
        .or_internal("update failed")?
        .ok_or_else(|| ApiError::not_found("channel not found"))?;
    let a = crate::channels::adapter(&channel.channel_type)
        .ok_or_else(|| ApiError::bad_request("unsupported channel_type"))?;
    let mut change = ChannelUpdate::default();
    if let Some(patch) = body.get("config") {
        if channel.config_error.is_some() {
            return Err(ApiError::internal(
                "update failed",
                &"stored config unreadable",
            ));
        }
        let sensitive = sensitive_keys(a);
        let merged = merge(&channel.config, config_of(Some(patch))?, &sensitive);
        a.validate_config(&state.channels.ctx().endpoints, &merged)
            .map_err(|e| invalid_config(&e))?;
        change.config = Some((merged, sensitive));
    }
    if let Some(v) = body.get("allowed_users") {
        change.allowed_users = Some(allowed_users(v)?);
    }
    match body.get("enabled") {
        None => {}
        Some(Value::Bool(b)) => change.enabled = Some(*b),
        Some(_) => return Err(ApiError::bad_request("enabled must be a boolean")),
    }
    match body.get("channel_budget") {
        None => {}
        Some(Value::Null) => change.channel_budget = Some(None),
        Some(v) => {
            let n = v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request("channel_budget must be a non-negative integer")
                })?;
            change.channel_budget = Some(Some(n));
        }
    }
    let found = store.update(ws, id, &change).await.map_err(|e| match e {
        StoreError::Cipher(e) => ApiError::internal("encrypt failed", &e),
        e => ApiError::internal("update failed", &e),
    })?;
    if !found {
        return Err(ApiError::not_found("channel not found"));
    }
    state.channels.reload();
    Ok(ok_json(StatusCode::OK, status_body("updated")))
}

/// `DELETE /workspaces/:id/channels/:channelId`.
pub(crate) async fn remove(
    State(state): State<AppState>,
    WorkspacePath(ws): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = channel_id(&raw)?;
    let found = state
        .store
        .channels()
        .delete(ws, id)
        .await
        .or_internal("delete failed")?;
    if !found {
        return Err(ApiError::not_found("channel not found"));
    }
    state.channels.reload();
    Ok(ok_json(StatusCode::OK, status_body("deleted")))
}

fn outbound_error(e: OutboundError, failure: &str) -> ApiError {
    match e {
        OutboundError::NotFound => ApiError::not_found("channel not found"),
        OutboundError::BudgetExceeded => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "channel budget exceeded")
        }
        e => ApiError::internal(failure, &e),
    }
}

/// `POST /workspaces/:id/channels/:channelId/send` `{text}`.
pub(crate) async fn send(
    State(state): State<AppState>,
    WorkspacePath(ws): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = body["text"].as_str().unwrap_or("");
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("text is required"));
    }
    let id = channel_id(&raw)?;
    state
        .channels
        .send_outbound(ws, id, text, true)
        .await
        .map_err(|e| outbound_error(e, "send failed"))?;
    Ok(ok_json(StatusCode::OK, status_body("sent")))
}

/// `POST /workspaces/:id/channels/:channelId/test`.
pub(crate) async fn test(
    State(state): State<AppState>,
    WorkspacePath(ws): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = channel_id(&raw)?;
    state
        .channels
        .send_outbound(ws, id, TEST_MESSAGE, false)
        .await
        .map_err(|e| outbound_error(e, "test message failed"))?;
    Ok(ok_json(
        StatusCode::OK,
        json!({"status": "ok", "message": "test message sent"}),
    ))
}

/// `POST /channels/discover` `{channel_type, bot_token, workspace_id}` (admin).
pub(crate) async fn discover(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = body["bot_token"].as_str().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(ApiError::bad_request("bot_token is required"));
    }
    let ws: WorkspaceId = body["workspace_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::bad_request("workspace_id is required"))?;
    let channel_type = body["channel_type"].as_str().unwrap_or("telegram");
    if crate::channels::adapter(channel_type).is_none() {
        return Err(ApiError::bad_request("unsupported channel_type"));
    }
    if channel_type != "telegram" {
        return Err(ApiError::bad_request(format!(
            "discovery not supported for {channel_type}"
        )));
    }
    let paused = state.channels.pause_bot(ws, &token).await;
    let found = telegram::discover(state.channels.ctx(), &token).await;
    state.channels.resume_later(paused);
    let found = found.map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(ok_json(StatusCode::OK, found))
}
