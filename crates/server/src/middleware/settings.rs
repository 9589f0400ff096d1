//! The settings of the HTTP pipeline: CORS origins, the global rate limit, body limits and the
//! body read timeout, the tenant's org id.

use std::time::Duration;

use super::body_limit::RouteBodyLimit;
use super::{cors, rate_limit};

/// The default request body limit. A route with a larger one is listed in
/// [`ROUTE_BODY_LIMITS`]; a route may lower its own with a `DefaultBodyLimit` layer.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default request body read timeout.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Routes whose body limit is not [`DEFAULT_BODY_LIMIT`]: method, path template, bytes. The
/// pipeline checks `Content-Length` against it before any handler runs, so a larger limit must
/// be declared here (a `DefaultBodyLimit` on the route alone would be refused in front of it).
pub const ROUTE_BODY_LIMITS: &[(&str, &str, usize)] = &[
    // A whole memory export (up to 100 000 bytes per memory) comes back in one body.
    ("POST", "/admin/memories/import", 64 * 1024 * 1024),
    // One file of the Files API (at most 5 MiB, base64 or JSON-escaped text in the body).
    ("PUT", "/workspaces/{id}/files/{*path}", 16 * 1024 * 1024),
    // A bulk replace of up to 200 files.
    ("PUT", "/workspaces/{id}/files", 32 * 1024 * 1024),
    // Chat attachments, streamed to the agent (routes::chat_files).
    ("POST", "/workspaces/{id}/chat/uploads", 50 * 1024 * 1024),
];

/// Settings of the HTTP pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Allowed CORS origins, trimmed and lower-cased.
    pub cors_origins: Vec<String>,
    /// Global requests per window and client IP.
    pub rate_limit: u32,
    /// The global limiter's window.
    pub rate_window: Duration,
    /// The default request body limit in bytes.
    pub body_limit: usize,
    /// Routes with another body limit (default: [`ROUTE_BODY_LIMITS`]).
    pub route_body_limits: Vec<RouteBodyLimit>,
    /// How long a request's body may take to arrive, from its headers.
    pub body_read_timeout: Duration,
    /// The tenant's org id (`MOLECULE_ORG_ID`): when set, the tenant guard is on.
    pub tenant_org_id: Option<String>,
    /// The platform's public URL for external agents (`EXTERNAL_PLATFORM_URL`), no trailing `/`.
    pub external_platform_url: Option<String>,
}

impl Default for HttpSettings {
    /// The reference's defaults: the two localhost canvas origins, 600 requests a minute, 1 MiB
    /// (with [`ROUTE_BODY_LIMITS`]); bodies within 30 s.
    fn default() -> Self {
        Self {
            cors_origins: cors::parse_origins("http://localhost:3000,http://localhost:3001"),
            rate_limit: rate_limit::DEFAULT_RATE_LIMIT,
            rate_window: rate_limit::RATE_WINDOW,
            body_limit: DEFAULT_BODY_LIMIT,
            route_body_limits: ROUTE_BODY_LIMITS
                .iter()
                .filter_map(|(method, path, limit)| {
                    Some(RouteBodyLimit {
                        method: method.parse().ok()?,
                        path: (*path).to_owned(),
                        limit: *limit,
                    })
                })
                .collect(),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            tenant_org_id: None,
            external_platform_url: None,
        }
    }
}
