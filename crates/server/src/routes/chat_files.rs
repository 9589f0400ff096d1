//! Chat attachments (spec observability §1.17): `POST /workspaces/:id/chat/uploads` streams a
//! multipart body (at most [`UPLOAD_LIMIT`]) to the agent's `/internal/chat/uploads/ingest`,
//! and `GET /workspaces/:id/chat/download?path=` streams a file from the agent's
//! `/internal/file/read`. Both go through the A2A proxy's address policy and vetted client
//! ([`molecule_a2a::Proxy::forward_to_agent`]) with the platform inbound secret as bearer;
//! neither body is buffered here.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use molecule_a2a::fetch::FetchError;
use molecule_a2a::forward::AgentRequest;
use molecule_domain::{DeliveryMode, WorkspaceId};
use molecule_store::Workspace;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{BODY_TOO_LARGE, Query, WorkspacePath};
use crate::state::AppState;

/// The largest upload body, in bytes (50 MiB).
pub const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;

/// The roots a download may read under.
const DOWNLOAD_ROOTS: [&str; 4] = ["/configs", "/workspace", "/home", "/plugins"];

/// `POST /workspaces/:id/chat/uploads`: the multipart body, streamed to the agent; its answer
/// (status, `Content-Type`, body) relayed.
pub(crate) async fn upload(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    request: Request,
) -> ApiResult<Response> {
    let (ws, secret) = target(&state, id, "upload").await?;
    let (parts, body) = request.into_parts();
    let mut headers = bearer(&secret)?;
    copy(
        &parts.headers,
        &mut headers,
        &[header::CONTENT_TYPE, header::CONTENT_LENGTH],
    );
    let exceeded = Arc::new(AtomicBool::new(false));
    let body = reqwest::Body::wrap(CappedBody {
        inner: std::sync::Mutex::new(body),
        seen: 0,
        exceeded: Arc::clone(&exceeded),
    });
    let sent = state
        .a2a
        .forward_to_agent(
            &ws,
            AgentRequest {
                method: reqwest::Method::POST,
                path: "/internal/chat/uploads/ingest",
                query: &[],
                headers,
                body: Some(body),
            },
        )
        .await;
    if exceeded.load(Ordering::Acquire) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE));
    }
    Ok(relay(
        sent.map_err(|e| unreachable(id, e))?,
        &[header::CONTENT_TYPE],
    ))
}

/// `GET /workspaces/:id/chat/download` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DownloadQuery {
    #[serde(default)]
    path: String,
}

/// `GET /workspaces/:id/chat/download?path=<absolute path>`: the path is checked before any
/// database access; the agent's answer is relayed with its `Content-Type`, `Content-Length`
/// and `Content-Disposition`.
pub(crate) async fn download(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    check_download_path(&query.path).map_err(ApiError::bad_request)?;
    let (ws, secret) = target(&state, id, "download").await?;
    let params = [("path", query.path)];
    let sent = state
        .a2a
        .forward_to_agent(
            &ws,
            AgentRequest {
                method: reqwest::Method::GET,
                path: "/internal/file/read",
                query: &params,
                headers: bearer(&secret)?,
                body: None,
            },
        )
        .await;
    Ok(relay(
        sent.map_err(|e| unreachable(id, e))?,
        &[
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_DISPOSITION,
        ],
    ))
}

/// The spec's checks of a download path, in order; the message of the first that fails.
pub(crate) fn check_download_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("path query required");
    }
    if !path.starts_with('/') {
        return Err("path must be absolute");
    }
    let under_root = DOWNLOAD_ROOTS.iter().any(|root| {
        path == *root
            || path
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    });
    if !under_root {
        return Err("path must be under /configs, /workspace, /home, or /plugins");
    }
    let clean = !path.contains("..")
        && !path.contains('\0')
        && !path.ends_with('/')
        && path[1..]
            .split('/')
            .all(|part| !part.is_empty() && part != ".");
    if !clean {
        return Err("invalid path");
    }
    Ok(())
}

/// The workspace and its inbound secret, or the spec's refusal for `op`.
async fn target(state: &AppState, id: WorkspaceId, op: &str) -> ApiResult<(Workspace, String)> {
    let ws = super::live_workspace(state, id, "lookup failed").await?;
    if ws.url.as_deref().is_none_or(str::is_empty) {
        if ws.delivery_mode == DeliveryMode::Push {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "workspace url not registered yet",
            ));
        }
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("workspace has no callback URL — chat {op} requires push-mode + public URL"),
        )
        .with(
            "detail",
            "Register the workspace's agent with delivery_mode \"push\" and a URL the platform \
             can reach, then retry.",
        ));
    }
    let workspaces = state.store.workspaces();
    let not_enrolled = |e: &dyn std::fmt::Display| {
        tracing::warn!(workspace = %id, error = %e, "chat files: cannot read or mint the inbound secret");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("workspace not yet enrolled in v2 {op} (RFC #2312)"),
        )
        .with(
            "detail",
            "Failed to mint inbound secret. Reprovision the workspace if this persists.",
        )
    };
    match workspaces.inbound_secret(id).await {
        Ok(Some(secret)) if !secret.is_empty() => Ok((ws, secret)),
        Ok(_) => {
            // Lazy heal: mint it now; the agent learns it at its next heartbeat.
            let secret = molecule_store::random_token().map_err(|e| not_enrolled(&e))?;
            workspaces
                .set_inbound_secret(id, &secret)
                .await
                .map_err(|e| not_enrolled(&e))?;
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "workspace re-registering — please retry in 30 seconds",
            )
            .with(
                "detail",
                "The workspace had no platform inbound secret; one was minted and reaches the \
                 agent with its next heartbeat.",
            )
            .with("retry_after_seconds", 30))
        }
        Err(e) => Err(not_enrolled(&e)),
    }
}

fn bearer(secret: &str) -> ApiResult<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}"))
        .map_err(|e| ApiError::internal("invalid inbound secret", &e))?;
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(headers)
}

fn copy(from: &HeaderMap, to: &mut reqwest::header::HeaderMap, names: &[HeaderName]) {
    for name in names {
        if let Some(value) = from.get(name) {
            to.insert(name.clone(), value.clone());
        }
    }
}

fn unreachable(id: WorkspaceId, e: FetchError) -> ApiError {
    tracing::warn!(workspace = %id, error = %e, "chat files: agent not reached");
    match e {
        FetchError::NotAllowed => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
        FetchError::Timeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        FetchError::NoUrl | FetchError::Unreachable | FetchError::BadAnswer => {
            ApiError::new(StatusCode::BAD_GATEWAY, "workspace unreachable")
        }
    }
}

/// The agent's answer with its status, the `headers` named and its body streamed.
fn relay(answer: reqwest::Response, headers: &[HeaderName]) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut kept = HeaderMap::new();
    for name in headers {
        if let Some(value) = answer.headers().get(name) {
            kept.insert(name.clone(), value.clone());
        }
    }
    let chunks = futures_util::stream::unfold(Some(answer), |answer| async move {
        let mut answer = answer?;
        match answer.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(answer))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    (status, kept, Body::from_stream(chunks)).into_response()
}

/// The upload body as reqwest needs it (`Sync`: the body is only ever reached through
/// `&mut`, so the mutex is never locked), cut off after [`UPLOAD_LIMIT`] bytes with
/// `exceeded` set.
struct CappedBody {
    inner: std::sync::Mutex<Body>,
    seen: usize,
    exceeded: Arc<AtomicBool>,
}

/// The error a body over the limit fails with.
#[derive(Debug, thiserror::Error)]
#[error("upload over {UPLOAD_LIMIT} bytes")]
struct TooLarge;

impl http_body::Body for CappedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let inner = this
            .inner
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            this.seen = this.seen.saturating_add(data.len());
            if this.seen > UPLOAD_LIMIT {
                this.exceeded.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(Box::new(TooLarge))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths_follow_the_spec_order() {
        for ok in [
            "/workspace",
            "/workspace/a.txt",
            "/configs/x/y",
            "/home/u/.bashrc",
            "/plugins/p",
        ] {
            assert_eq!(check_download_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "path query required"),
            ("workspace/a", "path must be absolute"),
            (
                "/etc/passwd",
                "path must be under /configs, /workspace, /home, or /plugins",
            ),
            (
                "/workspacex/a",
                "path must be under /configs, /workspace, /home, or /plugins",
            ),
            ("/workspace/../etc/passwd", "invalid path"),
            ("/workspace/a/../b", "invalid path"),
            ("/workspace//a", "invalid path"),
            ("/workspace/./a", "invalid path"),
            ("/workspace/a/", "invalid path"),
            ("/workspace/a\0b", "invalid path"),
        ] {
            assert_eq!(check_download_path(bad), Err(why), "{bad:?}");
        }
    }
}
