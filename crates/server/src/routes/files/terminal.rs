//! The terminal (spec provisioner §1.9): `GET /workspaces/:id/terminal`, a WebSocket onto an
//! interactive shell in the workspace's compute, and `GET …/terminal/diagnose`, the steps of
//! opening one as a JSON report. Client frames go to the shell's stdin, except a text frame
//! `{"type":"resize","cols":C,"rows":R}`, which resizes its TTY window.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::Response;
use molecule_domain::{Runtime, WorkspaceId};
use molecule_provisioner_api::access::{Terminal, TerminalInput, TerminalSize};
use molecule_store::{PlainToken, Workspace};
use serde_json::{Value, json};

use super::TRANSIENT;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::WorkspacePath;
use crate::lifecycle::{AccessError, ContainerState};
use crate::routes::live_workspace;
use crate::state::AppState;

/// A session with no message from the client for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The whole diagnosis is bounded by this.
const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the client reads when the shell cannot be started.
const SHELL_FAILED: &str = "Error: failed to create shell session\r\n";

/// The cross-workspace check (KI-005): a caller naming another workspace in `X-Workspace-ID`
/// must hold that workspace's token (unless it came with an org token) and may reach the
/// target only if the hierarchy lets it communicate with it.
async fn cross_workspace(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    target: WorkspaceId,
    refused: &str,
) -> ApiResult<()> {
    let Some(value) = headers.get("x-workspace-id") else {
        return Ok(());
    };
    let claimed: WorkspaceId = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid X-Workspace-ID"))?;
    if claimed == target {
        return Ok(());
    }
    let org = matches!(extensions.get::<Caller>(), Some(Caller::Org(_)));
    if let Some(bearer) = auth::bearer(headers).filter(|_| !org) {
        let valid = state
            .store
            .tokens()
            .validate(claimed, &PlainToken::new(bearer))
            .await
            .or_internal("auth check failed")?;
        if !valid {
            return Err(ApiError::unauthorized(
                "invalid token for claimed workspace",
            ));
        }
    }
    let allowed = state
        .store
        .workspaces()
        .can_communicate(claimed, target)
        .await
        .or_internal("lookup failed")?;
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(refused))
    }
}

/// An empty origin, a `localhost` one, or one of `CORS_ORIGINS` exactly.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    origin.is_empty()
        || origin.starts_with("http://localhost:")
        || origin.starts_with("https://localhost:")
        || state.http.cors_origins.contains(&origin)
}

fn external(ws: &Workspace) -> bool {
    ws.runtime == Runtime::EXTERNAL && ws.instance_id.as_deref().unwrap_or("").is_empty()
}

fn no_external() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "terminal is not supported for external runtimes",
    )
}

/// `GET /workspaces/:id/terminal` (WebSocket).
pub(crate) async fn open(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    headers: HeaderMap,
    extensions: Extensions,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    cross_workspace(
        &state,
        &headers,
        &extensions,
        id,
        "not authorized to access this workspace's terminal",
    )
    .await?;
    let ws = live_workspace(&state, id, "lookup failed").await?;
    if !origin_allowed(&state, &headers) {
        return Err(ApiError::forbidden("origin not allowed"));
    }
    if external(&ws) {
        return Err(no_external());
    }
    if !state.lifecycle.has_backend() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Docker not available",
        ));
    }
    match state.lifecycle.container_state(&ws).await {
        ContainerState::Running => {}
        ContainerState::NotRunning => return Err(ApiError::not_found("container not running")),
        ContainerState::Transient => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, TRANSIENT));
        }
    }
    let upgrade = upgrade
        .map_err(|rejection| ApiError::new(rejection.status(), "websocket upgrade required"))?;
    Ok(upgrade.on_upgrade(move |mut socket| async move {
        match state.lifecycle.open_terminal(&ws).await {
            Ok(terminal) => pump(socket, terminal).await,
            Err(_) => {
                let _ = socket.send(Message::Text(SHELL_FAILED.into())).await;
                let _ = socket.send(close(close_code::ERROR, "")).await;
            }
        }
    }))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The most columns or rows a resize may ask for.
const MAX_WINDOW: u16 = 1000;

/// A text frame that is exactly `{"type":"resize","cols":C,"rows":R}` (1 ≤ C, R ≤ 1000)
/// resizes the TTY; anything else is keyboard input.
fn window_size(text: &str) -> Option<TerminalSize> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Resize {
        r#type: String,
        cols: u16,
        rows: u16,
    }
    if !text.starts_with('{') {
        return None;
    }
    let r: Resize = serde_json::from_str(text).ok()?;
    let fits = |n: u16| (1..=MAX_WINDOW).contains(&n);
    (r.r#type == "resize" && fits(r.cols) && fits(r.rows)).then_some(TerminalSize {
        cols: r.cols,
        rows: r.rows,
    })
}

/// Shell output to binary frames, client frames to the shell's stdin, until either side ends
/// or the client is idle for [`IDLE_TIMEOUT`] (counted from its first message).
async fn pump(mut socket: WebSocket, terminal: Terminal) {
    let Terminal { input, mut output } = terminal;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let idle = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = output.recv() => match out {
                Some(bytes) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(close(close_code::NORMAL, "")).await;
                    return;
                }
            },
            message = socket.recv() => {
                let next = match message {
                    Some(Ok(Message::Binary(b))) => TerminalInput::Data(b.to_vec()),
                    Some(Ok(Message::Text(t))) => match window_size(t.as_str()) {
                        Some(size) => TerminalInput::Resize(size),
                        None => TerminalInput::Data(t.as_str().as_bytes().to_vec()),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                deadline = Some(tokio::time::Instant::now() + IDLE_TIMEOUT);
                if input.send(next).await.is_err() {
                    let _ = socket.send(close(close_code::NORMAL, "")).await;
                    return;
                }
            }
            () = idle => {
                let _ = socket.send(close(close_code::NORMAL, "idle timeout")).await;
                return;
            }
        }
    }
}

/// `GET /workspaces/:id/terminal/diagnose`: always 200 once the steps run.
pub(crate) async fn diagnose(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    headers: HeaderMap,
    extensions: Extensions,
) -> ApiResult<Response> {
    cross_workspace(
        &state,
        &headers,
        &extensions,
        id,
        "not authorized to diagnose this workspace's terminal",
    )
    .await?;
    let ws = live_workspace(&state, id, "lookup failed").await?;
    if external(&ws) {
        return Err(no_external());
    }
    let instance_id = ws.instance_id.clone().filter(|i| !i.is_empty());
    let steps = match tokio::time::timeout(DIAGNOSE_TIMEOUT, state.lifecycle.diagnose_terminal(&ws))
        .await
    {
        Ok(Ok(steps)) => steps
            .into_iter()
            .map(|s| {
                let mut step = json!({"name": s.name, "ok": s.ok, "duration_ms": s.duration_ms});
                if let Some(error) = s.error {
                    step["error"] = Value::String(error);
                }
                if let Some(detail) = s.detail {
                    step["detail"] = Value::String(detail);
                }
                step
            })
            .collect::<Vec<_>>(),
        Ok(Err(AccessError::NoBackend)) => vec![json!({
            "name": "docker-available", "ok": false, "duration_ms": 0,
            "error": "Docker not available",
        })],
        Ok(Err(AccessError::Unsupported)) => {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "terminal is not supported by this workspace's backend",
            ));
        }
        Ok(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "diagnose failed",
            ));
        }
        Err(_) => vec![json!({
            "name": "timeout", "ok": false, "duration_ms": DIAGNOSE_TIMEOUT.as_millis(),
            "error": "diagnosis did not finish in 30 s",
        })],
    };
    let first_failure = steps
        .iter()
        .find(|s| s["ok"] == Value::Bool(false))
        .and_then(|s| s["name"].as_str().map(str::to_owned));
    let mut body = json!({
        "workspace_id": id,
        "remote": instance_id.is_some(),
        "ok": first_failure.is_none(),
        "steps": steps,
    });
    if let Some(instance) = instance_id {
        body["instance_id"] = Value::String(instance);
    }
    if let Some(failure) = first_failure {
        body["first_failure"] = Value::String(failure);
    }
    Ok(ok_json(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_resize_frames_resize() {
        assert_eq!(
            window_size(r#"{"type":"resize","cols":120,"rows":40}"#),
            Some(TerminalSize {
                cols: 120,
                rows: 40
            })
        );
        for input in [
            "ls\r",
            "{",
            r#"{"type":"resize","cols":0,"rows":40}"#,
            r#"{"type":"resize","cols":70000,"rows":40}"#,
            r#"{"type":"resize","cols":1001,"rows":40}"#,
            r#"{"type":"other","cols":80,"rows":24}"#,
            r#"{"type":"resize","cols":80,"rows":24,"x":1}"#,
            r#" {"type":"resize","cols":80,"rows":24}"#,
        ] {
            assert_eq!(window_size(input), None, "{input}");
        }
    }
}
