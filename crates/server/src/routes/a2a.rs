//! The A2A routes: the proxy, queue status, stale-queue cleanup and delegations. Identity is
//! settled here (Decision 2); everything after it is the `molecule-a2a` crate's.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use molecule_a2a::{Caller, Message, Reply};
use molecule_domain::WorkspaceId;
use molecule_store::PlainToken;
use serde::Deserialize;

use crate::auth;
use crate::error::{ApiError, ApiResult, OrInternal};
use crate::extract::{Query, WorkspacePath, non_empty};
use crate::state::AppState;

/// The header an agent names itself with.
const CALLER_HEADER: &str = "x-workspace-id";

/// A proxy reply as an HTTP response.
fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let molecule_a2a::Body::Stream(stream) = &reply.body {
        return relay(status, stream);
    }
    let mut response = (status, reply.body.to_bytes()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = reply.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An agent's event stream, passed through chunk by chunk with its content type.
fn relay(status: StatusCode, stream: &molecule_a2a::reply::Stream) -> Response {
    let chunks = stream.take();
    let body = futures_util::stream::unfold(chunks, |chunks| async move {
        let mut chunks = chunks?;
        let chunk = chunks.recv().await?;
        Some((chunk, Some(chunks)))
    });
    let mut response = (status, axum::body::Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&stream.content_type)
        .unwrap_or(HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Who is calling, from `X-Workspace-ID` and the bearer. Outside dev mode an identity is
/// always needed: a workspace's own token (for the workspace it names, if it names one), or
/// the admin token or an org token acting for the user.
async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let claimed = headers
        .get(CALLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let bearer = auth::bearer(headers);
    let tokens = state.store.tokens();
    if let Some(claimed) = claimed {
        if Caller::is_system_id(claimed) {
            return Err(ApiError::forbidden("invalid caller ID"));
        }
        let id: WorkspaceId = claimed
            .parse()
            .map_err(|_| ApiError::forbidden("invalid caller ID"))?;
        return match bearer {
            Some(b) => {
                let valid = tokens
                    .validate(id, &PlainToken::new(b))
                    .await
                    .or_internal("auth check failed")?;
                if valid {
                    Ok(Caller::Workspace(id))
                } else {
                    Err(ApiError::unauthorized("invalid caller auth token"))
                }
            }
            None if state.security.dev_mode() => {
                let live = tokens
                    .count_live(id)
                    .await
                    .or_internal("auth check failed")?;
                if live == 0 {
                    Ok(Caller::Workspace(id))
                } else {
                    Err(ApiError::unauthorized("missing caller auth token"))
                }
            }
            None => Err(ApiError::unauthorized("missing caller auth token")),
        };
    }
    match bearer {
        Some(b) if state.security.is_admin_token(b) => Ok(Caller::User),
        Some(b) => {
            let org = state
                .store
                .org_tokens()
                .validate(&PlainToken::new(b))
                .await
                .or_internal("auth check failed")?;
            if org.is_some() {
                return Ok(Caller::User);
            }
            match tokens
                .workspace_of(&PlainToken::new(b))
                .await
                .or_internal("auth check failed")?
            {
                Some(ws) => Ok(Caller::Workspace(ws)),
                None if state.security.dev_mode() => Ok(Caller::User),
                None => Err(ApiError::unauthorized("invalid caller auth token")),
            }
        }
        None if state.security.dev_mode() => Ok(Caller::User),
        None => Err(ApiError::unauthorized("missing caller auth token")),
    }
}

/// `X-Timeout: N` (N > 0 seconds) bounds the whole delivery.
fn timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("x-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
}

/// `POST /workspaces/:id/a2a`. The delivery runs detached from the request: a caller that
/// goes away does not cancel it, and its outcome is still recorded.
pub(crate) async fn proxy(
    State(state): State<AppState>,
    WorkspacePath(target): WorkspacePath,
    headers: HeaderMap,
    raw: Bytes,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers).await?;
    let message = Message {
        target,
        caller,
        body: raw.to_vec(),
        timeout: timeout(&headers),
        log: true,
    };
    let proxy = state.a2a.clone();
    // Detached from the request (a disconnect does not cancel it), still in its trace.
    let reply = tokio::spawn(tracing::Instrument::in_current_span(async move {
        proxy.send(message).await
    }))
    .await
    .or_internal("a2a delivery failed")?;
    Ok(respond(reply))
}

/// `GET /workspaces/:id/a2a/queue/:queue_id`: the sender or the target of the message (its
/// own token proves it) sees its state; anyone else gets 404.
pub(crate) async fn queue_status(
    State(state): State<AppState>,
    Path((_id, queue_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let identity = match caller(&state, &headers).await {
        Ok(Caller::Workspace(ws)) => Some(ws),
        _ => None,
    };
    respond(state.a2a.queue_status(identity, &queue_id).await)
}

/// `POST /admin/a2a-queue/drop-stale` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DropStaleQuery {
    #[serde(default, deserialize_with = "non_empty")]
    max_age_minutes: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    workspace_id: Option<String>,
}

/// `POST /admin/a2a-queue/drop-stale?max_age_minutes=&workspace_id=`.
pub(crate) async fn drop_stale(
    State(state): State<AppState>,
    Query(query): Query<DropStaleQuery>,
) -> Response {
    respond(
        state
            .a2a
            .drop_stale(
                query.max_age_minutes.as_deref(),
                query.workspace_id.as_deref(),
            )
            .await,
    )
}

/// `POST /workspaces/:id/delegate`.
pub(crate) async fn delegate(
    State(state): State<AppState>,
    WorkspacePath(source): WorkspacePath,
    raw: Bytes,
) -> ApiResult<Response> {
    Ok(respond(state.a2a.delegate(source, &raw).await))
}

/// `GET /workspaces/:id/delegations`.
pub(crate) async fn delegations(
    State(state): State<AppState>,
    WorkspacePath(source): WorkspacePath,
) -> ApiResult<Response> {
    Ok(respond(state.a2a.list_delegations(source).await))
}

/// `POST /workspaces/:id/delegations/record`.
pub(crate) async fn record_delegation(
    State(state): State<AppState>,
    WorkspacePath(source): WorkspacePath,
    raw: Bytes,
) -> ApiResult<Response> {
    Ok(respond(state.a2a.record_delegation(source, &raw).await))
}

/// `POST /workspaces/:id/delegations/:delegation_id/update`.
pub(crate) async fn update_delegation(
    State(state): State<AppState>,
    WorkspacePath(source): WorkspacePath,
    Path((_, delegation_id)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Response> {
    Ok(respond(
        state
            .a2a
            .update_delegation(source, &delegation_id, &raw)
            .await,
    ))
}
