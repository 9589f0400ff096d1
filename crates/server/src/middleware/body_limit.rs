//! The request body limit, answered in the API's JSON on every route.
//!
//! [`body_limit`] runs inside the router, where the matched route is known:
//! - the route's limit is [`HttpSettings::body_limit`](super::HttpSettings), unless
//!   [`HttpSettings::route_body_limits`](super::HttpSettings) lists the route with its own;
//! - a `Content-Length` over that limit is refused at once with 413
//!   `{"error":"request body too large"}`, before any guard or handler runs, so a route whose
//!   handler never reads the body refuses it too;
//! - otherwise the limit is handed to axum's extractors (`DefaultBodyLimit`), so a body
//!   without a length (chunked) is cut off while it is read;
//! - any other 413 produced inside (axum's plain-text rejection, a route's own smaller
//!   `DefaultBodyLimit`) is turned into the same JSON answer.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use super::HttpSettings;
use crate::error::ApiError;
use crate::extract::BODY_TOO_LARGE;

/// A route with a body limit other than the default one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteBodyLimit {
    /// The route's method.
    pub method: Method,
    /// The route's path template, as in the route table (`/workspaces/{id}/…`).
    pub path: String,
    /// The limit in bytes.
    pub limit: usize,
}

/// The body limit of the route `request` matched (see the module documentation).
pub async fn body_limit(
    State(http): State<Arc<HttpSettings>>,
    mut request: Request,
    next: Next,
) -> Response {
    let limit = route_limit(&http, &request);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        // The body is left unread: the connection cannot be reused.
        let mut response = too_large();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    DefaultBodyLimit::max(limit).apply(&mut request);
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&response) {
        return too_large();
    }
    response
}

fn route_limit(http: &HttpSettings, request: &Request) -> usize {
    request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| {
            http.route_body_limits
                .iter()
                .find(|r| r.method == request.method() && r.path == matched.as_str())
        })
        .map_or(http.body_limit, |r| r.limit)
}

fn too_large() -> Response {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE).into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
