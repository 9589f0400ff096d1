//! Event routes: the `/ws` WebSocket, the per-workspace SSE stream and the structure-event
//! log (observability §1.2–1.4).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{Store, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::auth;
use crate::error::{ApiError, ApiResult, OrInternal};
use crate::events::Envelope;
use crate::extract::{Query, WorkspacePath};
use crate::state::AppState;

/// Messages a WebSocket client may have waiting; beyond that, events are dropped for it.
const CLIENT_BUFFER: usize = 256;
/// How often an idle WebSocket gets a ping and an SSE stream a comment, so that proxies do
/// not cut them.
const KEEPALIVE: Duration = Duration::from_secs(25);
/// How long a WebSocket client remembers a communication decision.
const DECISION_TTL: Duration = Duration::from_secs(10);
/// How many communication decisions a WebSocket client remembers.
const DECISION_CACHE: usize = 4096;
/// How many structure events the log routes return.
const EVENT_LOG_LIMIT: i64 = 100;

// ---- /ws ----

#[derive(Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

/// `GET /ws`: without `X-Workspace-ID` a canvas client (admin credentials outside dev mode,
/// as a bearer or a `token` query parameter) that receives every event; with it a workspace
/// client (its own token if it has any) that receives the events of the workspaces it may
/// communicate with.
pub(crate) async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let audience = match headers.get("x-workspace-id") {
        None => {
            canvas_auth(&state, &headers, query.token.as_deref())?;
            Audience::Everything
        }
        Some(value) => {
            let id: WorkspaceId = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| ApiError::bad_request("invalid workspace ID"))?;
            auth::agent_credential(&state, &headers, id, false).await?;
            Audience::Workspace(WorkspaceFilter::new(id, state.store.clone()))
        }
    };
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if !state.security.ws_origin_allowed(origin) {
        return Err(ApiError::forbidden("origin not allowed"));
    }
    let upgrade = upgrade
        .map_err(|rejection| ApiError::new(rejection.status(), "websocket upgrade required"))?;
    // Subscribed before the handshake completes: the client misses nothing emitted after it.
    let events = state.events.subscribe();
    let closing = state.events.closing();
    let metrics = state.metrics.clone();
    Ok(upgrade.on_upgrade(move |socket| async move {
        // Counted in `molecule_websocket_connections_active` while the socket is served.
        let _open = metrics.websocket_connection();
        serve_socket(socket, events, audience, closing).await;
    }))
}

/// The canvas decision: dev mode, or the admin token as a bearer or `?token=`.
fn canvas_auth(state: &AppState, headers: &HeaderMap, token: Option<&str>) -> ApiResult<()> {
    if state.security.dev_mode() {
        return Ok(());
    }
    let presented =
        auth::bearer(headers).or_else(|| token.map(str::trim).filter(|t| !t.is_empty()));
    match presented {
        None => Err(ApiError::unauthorized("admin auth required")),
        Some(t) if state.security.is_admin_token(t) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("invalid admin auth token")),
    }
}

/// Who a WebSocket client is, for the fan-out rule.
enum Audience {
    /// The canvas: every event.
    Everything,
    /// A workspace: the events about workspaces it may communicate with.
    Workspace(WorkspaceFilter),
}

/// The fan-out rule of one workspace client, with a short memory of its decisions so that
/// the hierarchy is not queried for every event.
struct WorkspaceFilter {
    id: WorkspaceId,
    store: Store,
    decisions: HashMap<WorkspaceId, (bool, Instant)>,
}

impl WorkspaceFilter {
    fn new(id: WorkspaceId, store: Store) -> Self {
        Self {
            id,
            store,
            decisions: HashMap::new(),
        }
    }
}

/// Broadcast-only events that carry message or traffic bodies: a workspace client gets them
/// only about itself, never about its peers.
fn is_private(event: &str) -> bool {
    [
        EventType::ActivityLogged,
        EventType::AgentMessage,
        EventType::A2aResponse,
    ]
    .iter()
    .any(|t| t.as_str() == event)
}

impl Audience {
    async fn admits(&mut self, envelope: &Envelope) -> bool {
        let filter = match self {
            Audience::Everything => return true,
            Audience::Workspace(filter) => filter,
        };
        let Some(about) = envelope.workspace() else {
            return false;
        };
        if about == filter.id {
            return true;
        }
        if is_private(&envelope.event) {
            return false;
        }
        if let Some((allowed, at)) = filter.decisions.get(&about)
            && at.elapsed() < DECISION_TTL
        {
            return *allowed;
        }
        match filter
            .store
            .workspaces()
            .can_communicate(filter.id, about)
            .await
        {
            Ok(allowed) => {
                if filter.decisions.len() >= DECISION_CACHE {
                    filter.decisions.clear();
                }
                filter.decisions.insert(about, (allowed, Instant::now()));
                allowed
            }
            Err(e) => {
                tracing::warn!(error = %e, "hierarchy check failed: event withheld");
                false
            }
        }
    }
}

/// Runs one WebSocket: events out (through a bounded buffer), client frames read and
/// discarded, a ping when idle, a close frame at shutdown.
async fn serve_socket(
    mut socket: WebSocket,
    events: broadcast::Receiver<Arc<Envelope>>,
    audience: Audience,
    mut closing: watch::Receiver<bool>,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Utf8Bytes>(CLIENT_BUFFER);
    let pump = tokio::spawn(pump(events, audience, out_tx));
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some(text) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = keepalive.tick() => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            () = closed(&mut closing) => {
                let frame = CloseFrame {
                    code: close_code::AWAY,
                    reason: Utf8Bytes::from_static("server shutting down"),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    pump.abort();
}

/// Resolves when clients are asked to close (or the bus is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await.map(|_| ());
}

/// Moves the events a client may see into its buffer; a full buffer drops the event for
/// this client only.
async fn pump(
    mut events: broadcast::Receiver<Arc<Envelope>>,
    mut audience: Audience,
    out: mpsc::Sender<Utf8Bytes>,
) {
    loop {
        let envelope = match events.recv().await {
            Ok(envelope) => envelope,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "websocket client fell behind: events dropped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !audience.admits(&envelope).await {
            continue;
        }
        let text = match serde_json::to_string(&*envelope) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an event");
                continue;
            }
        };
        match out.try_send(Utf8Bytes::from(text)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(event = %envelope.event, "websocket buffer full: event dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

// ---- SSE ----

/// One SSE event: the AG-UI envelope.
#[derive(Serialize)]
struct SseEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: i64,
    data: &'a Value,
}

/// `GET /workspaces/:id/events/stream`: `: ping`, then one `data:` line per event about
/// this workspace.
pub(crate) async fn stream(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let exists = state
        .store
        .workspaces()
        .get(id)
        .await
        .or_internal("failed to verify workspace")?
        .is_some();
    if !exists {
        return Err(ApiError::not_found("workspace not found"));
    }
    // Subscribed before the response starts: nothing emitted after the ping is missed.
    let events = state.events.subscribe_workspace(id);
    let keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    let first = futures_util::stream::once(async { Ok(Bytes::from_static(b": ping\n\n")) });
    let rest = futures_util::stream::unfold(
        (events, keepalive),
        |(mut events, mut keepalive)| async move {
            let chunk = tokio::select! {
                envelope = events.recv() => {
                    let envelope: Arc<Envelope> = envelope?;
                    sse_chunk(&envelope)
                }
                _ = keepalive.tick() => Bytes::from_static(b": ping\n\n"),
            };
            Some((Ok::<_, Infallible>(chunk), (events, keepalive)))
        },
    );
    let mut response = Body::from_stream(first.chain(rest)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn sse_chunk(envelope: &Envelope) -> Bytes {
    let event = SseEvent {
        kind: &envelope.event,
        timestamp: envelope.unix_millis(),
        data: &envelope.payload,
    };
    match serde_json::to_string(&event) {
        Ok(json) => Bytes::from(format!("data: {json}\n\n")),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an event");
            Bytes::new()
        }
    }
}

// ---- structure event log ----

/// One item of the event log.
#[derive(Serialize)]
struct LoggedEvent {
    id: String,
    event_type: String,
    workspace_id: Option<String>,
    payload: Option<Value>,
    created_at: String,
}

impl From<StoredEvent> for LoggedEvent {
    fn from(e: StoredEvent) -> Self {
        LoggedEvent {
            id: e.id.to_string(),
            event_type: e.event_type,
            workspace_id: e.workspace_id.map(|w| w.to_string()),
            payload: e.payload,
            created_at: e.created_at.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

async fn event_log(state: &AppState, workspace: Option<WorkspaceId>) -> ApiResult<Response> {
    let events = state
        .store
        .events()
        .recent(workspace, EVENT_LOG_LIMIT)
        .await
        .or_internal("query failed")?;
    let items: Vec<LoggedEvent> = events.into_iter().map(Into::into).collect();
    Ok(axum::Json(items).into_response())
}

/// `GET /events`: the newest 100 structure events.
pub(crate) async fn list_all(State(state): State<AppState>) -> ApiResult<Response> {
    event_log(&state, None).await
}

/// `GET /events/:workspaceId`: the newest 100 structure events of one workspace.
pub(crate) async fn list_one(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    event_log(&state, Some(id)).await
}
