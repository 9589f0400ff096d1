//! The MCP bridge (`scheduler-channels-mcp.md` §9): every workspace's platform tools over
//! JSON-RPC 2.0 (`POST /workspaces/:id/mcp`) and the legacy SSE endpoint
//! (`GET /workspaces/:id/mcp/stream`). Both run after the workspace guard and the MCP limiter
//! (RL-MCP: 120 requests per 60 s per bearer). The tools call the store and services directly.

mod delegation;
mod rpc;
mod tools;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::WorkspacePath;
use crate::state::AppState;

/// The SSE keep-alive period of the legacy stream.
const PING_EVERY: Duration = Duration::from_secs(30);

/// The MCP limiter's key: the hex SHA-256 of the bearer (scheme case-insensitive, untrimmed);
/// `None` without a bearer.
fn bearer_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") || token.is_empty() {
        return None;
    }
    let digest = Sha256::digest(token.as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs RL-MCP, then `inner`; the answer carries the `X-RateLimit-*` headers.
async fn limited<F>(state: &AppState, headers: &HeaderMap, inner: F) -> Response
where
    F: std::future::Future<Output = Response>,
{
    let Some(key) = bearer_key(headers) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token").into_response();
    };
    let decision = state.mcp_limiter.check(key);
    if !decision.allowed {
        return decision.rejection("MCP rate limit exceeded");
    }
    let mut response = inner.await;
    decision.set_headers(response.headers_mut());
    response
}

/// `POST /workspaces/:id/mcp`: one JSON-RPC request (no batches).
pub(crate) async fn post(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    limited(&state, &headers, rpc::handle(&state, id, &body)).await
}

/// `GET /workspaces/:id/mcp/stream`: the `endpoint` event, then a comment every 30 s.
pub(crate) async fn stream(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    headers: HeaderMap,
) -> Response {
    limited(&state, &headers, async move {
        let first = format!("event: endpoint\ndata: /workspaces/{id}/mcp\n\n");
        let pings = futures_util::stream::unfold(
            (
                Some(first),
                tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY),
            ),
            |(first, mut ticker)| async move {
                let chunk = match first {
                    Some(text) => text,
                    None => {
                        ticker.tick().await;
                        String::from(": ping\n\n")
                    }
                };
                Some((Ok::<_, Infallible>(Bytes::from(chunk)), (None, ticker)))
            },
        );
        let mut response = Body::from_stream(pings).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn the_limiter_key_is_the_hashed_bearer_with_any_scheme_case() {
        let a = bearer_key(&headers("Bearer abc")).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(bearer_key(&headers("bearer abc")), Some(a.clone()));
        assert_eq!(bearer_key(&headers("BEARER abc")), Some(a.clone()));
        assert_ne!(bearer_key(&headers("Bearer abd")), Some(a));
        assert_eq!(bearer_key(&headers("Basic abc")), None);
        assert_eq!(bearer_key(&headers("Bearer ")), None);
        assert_eq!(bearer_key(&HeaderMap::new()), None);
    }
}
