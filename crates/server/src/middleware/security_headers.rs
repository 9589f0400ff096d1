//! Security headers (spec: auth-router §1.4) on every response. A header the handler (or an
//! inner layer) already set is kept, as in the reference where they are set before the handler.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The CSP of API paths.
pub const API_CSP: &str = "default-src 'self'";
/// The CSP of every other path (the canvas).
pub const CANVAS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; \
     font-src 'self' data:";

const API_PREFIXES: &[&str] = &[
    "/workspaces",
    "/registry",
    "/health",
    "/admin",
    "/metrics",
    "/settings",
    "/bundles",
    "/org",
    "/orgs",
    "/templates",
    "/plugins",
    "/webhooks",
    "/channels",
    "/ws",
    "/events",
    "/approvals",
];

const FIXED: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    ),
    (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    (
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    ),
];

/// Whether `path` is an API path: it equals, or starts with `<prefix>/`, one of the API
/// prefixes.
pub fn is_api_path(path: &str) -> bool {
    API_PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The security-headers layer; put it outermost so that every answer carries them.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let csp = if is_api_path(request.uri().path()) {
        API_CSP
    } else {
        CANVAS_CSP
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in FIXED {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(csp));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_follow_the_prefix_rule() {
        for p in [
            "/workspaces",
            "/workspaces/x/a2a",
            "/health",
            "/org/tokens",
            "/ws",
            "/metrics",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in [
            "/buildinfo",
            "/canvas/x",
            "/instructions",
            "/cp/auth/me",
            "/",
            "/healthz",
            "/organisations",
        ] {
            assert!(!is_api_path(p), "{p}");
        }
    }
}
