//! HTTP handlers, one module per area of the API.

pub(crate) mod a2a;
pub(crate) mod activity;
pub(crate) mod admin;
pub(crate) mod agents;
pub(crate) mod approvals;
pub(crate) mod canvas;
pub(crate) mod discovery;
pub(crate) mod events;
pub(crate) mod observe;
pub(crate) mod org_tokens;
pub(crate) mod registry;
pub(crate) mod secrets;
pub(crate) mod system;
pub(crate) mod team;
pub(crate) mod tokens;
pub(crate) mod workspaces;

mod body;
mod views;

/// The URL the caller reached this server at, from the request's `Host` (what an external
/// agent on the caller's side of the network can use).
pub(crate) fn request_origin(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{}", host.trim_end_matches('/'))
}
