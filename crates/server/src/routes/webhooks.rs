//! Inbound webhooks (spec: scheduler-channels-mcp §7): `POST /webhooks/:type` for chat
//! channels (verified per channel, see `channels::webhook`) and `POST /webhooks/github[/:id]`
//! (HMAC-SHA256 of the raw body with `GITHUB_WEBHOOK_SECRET`, checked before the body is
//! parsed). GitHub cron triggers only touch the workspace in the path when there is one
//! (spec §D8), and a delivery id seen recently is not handled twice.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use molecule_a2a::reply::Body;
use molecule_a2a::{Caller, Message};
use molecule_domain::WorkspaceId;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::channels::adapter::{WebhookRequest, hex, same_secret};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The system caller GitHub deliveries are sent as.
pub const GITHUB_CALLER: &str = "webhook:github";

/// Delivery ids remembered against duplicates.
pub const DELIVERIES_KEPT: usize = 1024;

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// `POST /webhooks/:type`: a chat platform's webhook.
pub(crate) async fn channel(
    State(state): State<AppState>,
    Path(channel_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = WebhookRequest {
        headers,
        body: body.to_vec(),
        now: OffsetDateTime::now_utc(),
    };
    let answer = state.channels.receive(&channel_type, request).await;
    reply(answer.status, answer.body)
}

/// `POST /webhooks/github`.
pub(crate) async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    github_delivery(&state, None, &headers, &body).await
}

/// `POST /webhooks/github/:id`.
pub(crate) async fn github_for(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let id: WorkspaceId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid workspace ID"))?;
    github_delivery(&state, Some(id), &headers, &body).await
}

/// Whether `X-Hub-Signature-256` is `sha256=<hex>` of the body under `secret`.
fn github_signed(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(given) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    let expected = format!("sha256={}", hex(&mac.finalize().into_bytes()));
    same_secret(expected.as_bytes(), given.trim().as_bytes())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn ignored(reason: &str) -> Response {
    reply(202, json!({"status": "ignored", "reason": reason}))
}

async fn github_delivery(
    state: &AppState,
    path_id: Option<WorkspaceId>,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let secret = state
        .github_webhook_secret
        .as_deref()
        .map(|s| s.trim())
        .unwrap_or("");
    if secret.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "github webhook secret is not configured",
        ));
    }
    if !github_signed(secret, headers, body) {
        return Err(ApiError::unauthorized("invalid webhook signature"));
    }
    let event = header(headers, "x-github-event").to_owned();
    let delivery = header(headers, "x-github-delivery").to_owned();
    if !delivery.is_empty() {
        let mut seen = state.github_deliveries.lock();
        if seen.contains(&delivery) {
            return Ok(reply(
                200,
                json!({"status": "duplicate", "delivery_id": delivery}),
            ));
        }
        if seen.len() >= DELIVERIES_KEPT {
            seen.pop_front();
        }
        seen.push_back(delivery.clone());
    }
    match event.as_str() {
        "issues" | "pull_request_review" => trigger(state, path_id, &event, body).await,
        _ => forward(state, path_id, &event, &delivery, body).await,
    }
}

/// `issues/opened` and `pull_request_review/submitted` make matching schedules due now.
async fn trigger(
    state: &AppState,
    ws: Option<WorkspaceId>,
    event: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let payload: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request(format!("invalid {event} payload")))?;
    let action = payload["action"].as_str().unwrap_or("");
    let (wanted, patterns): (&str, &[&str]) = if event == "issues" {
        ("opened", &["pick-up-work"])
    } else {
        ("submitted", &["pr review", "security review"])
    };
    if action != wanted {
        return Ok(ignored(&format!(
            "only {event} action={wanted} triggers crons"
        )));
    }
    let n = state
        .store
        .schedules()
        .trigger_named(patterns, ws, OffsetDateTime::now_utc())
        .await
        .map_err(|e| ApiError::internal("failed to trigger schedules", &e))?;
    Ok(reply(
        200,
        json!({"status": "triggered", "event": event, "action": action, "schedules_affected": n}),
    ))
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The message text and extra metadata of a forwarded event; `None`: not forwarded.
fn describe(event: &str, p: &Value) -> Option<(String, Map<String, Value>)> {
    let repo = s(p, "/repository/full_name");
    let mut extra = Map::new();
    match event {
        "issue_comment" | "pull_request_review_comment" if p["action"] == "created" => {
            let (label, number, key) = if event == "issue_comment" {
                ("issue", p.pointer("/issue/number"), "issue_number")
            } else {
                ("PR", p.pointer("/pull_request/number"), "pull_request_num")
            };
            let number = number.cloned().unwrap_or(Value::Null);
            extra.insert(key.into(), number.clone());
            extra.insert("comment_url".into(), json!(s(p, "/comment/html_url")));
            let text = format!(
                "GitHub {event} event (created) in {repo} {label} #{number} by {}:\n{}",
                s(p, "/comment/user/login"),
                s(p, "/comment/body").trim()
            );
            Some((text, extra))
        }
        "workflow_run" if p["action"] == "completed" => {
            let run = &p["workflow_run"];
            let conclusion = s(run, "/conclusion");
            if matches!(conclusion, "success" | "skipped" | "neutral") {
                return None;
            }
            let sha: String = s(run, "/head_sha").chars().take(7).collect();
            let text = format!(
                "GitHub CI break — workflow '{}' run #{} {conclusion} on {}@{sha}\nTriggered by: {} ({})\nRepo: {repo}\nRun URL: {}",
                s(run, "/name"),
                run["run_number"],
                s(run, "/head_branch"),
                s(p, "/sender/login"),
                s(run, "/event"),
                s(run, "/html_url"),
            );
            for (key, value) in [
                ("workflow_name", run["name"].clone()),
                ("run_id", run["id"].clone()),
                ("run_number", run["run_number"].clone()),
                ("conclusion", json!(conclusion)),
                ("head_branch", run["head_branch"].clone()),
                ("head_sha", run["head_sha"].clone()),
                ("run_url", run["html_url"].clone()),
                ("trigger_event", run["event"].clone()),
            ] {
                extra.insert(key.into(), value);
            }
            Some((text, extra))
        }
        _ => None,
    }
}

/// Comments and failed CI runs go to the workspace as A2A messages from `webhook:github`.
async fn forward(
    state: &AppState,
    path_id: Option<WorkspaceId>,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> ApiResult<Response> {
    if !matches!(
        event,
        "issue_comment" | "pull_request_review_comment" | "workflow_run"
    ) {
        return Ok(ignored("unsupported event type"));
    }
    let payload: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request(format!("invalid {event} payload")))?;
    let Some((text, extra)) = describe(event, &payload) else {
        return Ok(ignored("unsupported event type"));
    };
    let target = path_id
        .or_else(|| {
            payload["workspace_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
        })
        .ok_or_else(|| ApiError::bad_request("missing workspace id"))?;
    let mut metadata = json!({
        "source": "github", "event": event, "action": payload["action"],
        "delivery_id": delivery, "repository": s(&payload, "/repository/full_name"),
        "sender": s(&payload, "/sender/login"),
    });
    if let Some(m) = metadata.as_object_mut() {
        m.extend(extra);
    }
    let message = json!({
        "method": "message/send",
        "params": {
            "message": {"role": "user", "parts": [{"kind": "text", "text": text}]},
            "metadata": metadata,
        },
    });
    let answer = state
        .a2a
        .send(Message {
            target,
            caller: Caller::System(GITHUB_CALLER.into()),
            body: message.to_string().into_bytes(),
            timeout: None,
            log: true,
        })
        .await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok(match answer.body {
        Body::Json(v) => (status, Json(v)).into_response(),
        Body::Agent(bytes) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Body::Stream(_) => reply(202, json!({"status": "accepted"})),
    })
}
