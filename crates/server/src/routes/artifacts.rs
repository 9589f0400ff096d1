//! Cloudflare Artifacts (`observability.md` §1.18), a demo integration of the reference
//! vendor. This server ships without the Cloudflare client, so the artifact store is never
//! configured: every route answers the spec's 503 after the workspace guard, whatever the
//! body, and nothing is read or written.

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::extract::WorkspacePath;

/// The spec's answer when the artifact store is not configured.
pub(crate) const NOT_CONFIGURED: &str =
    "Cloudflare Artifacts not configured — set CF_ARTIFACTS_API_TOKEN and CF_ARTIFACTS_NAMESPACE";

fn not_configured() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_CONFIGURED)
}

/// `POST /workspaces/:id/artifacts`: link a repo (503: not configured).
pub(crate) async fn link(WorkspacePath(_): WorkspacePath) -> ApiError {
    not_configured()
}

/// `GET /workspaces/:id/artifacts`: the linked repo (503: not configured).
pub(crate) async fn get(WorkspacePath(_): WorkspacePath) -> ApiError {
    not_configured()
}

/// `POST /workspaces/:id/artifacts/fork` (503: not configured).
pub(crate) async fn fork(WorkspacePath(_): WorkspacePath) -> ApiError {
    not_configured()
}

/// `POST /workspaces/:id/artifacts/token` (503: not configured).
pub(crate) async fn token(WorkspacePath(_): WorkspacePath) -> ApiError {
    not_configured()
}
