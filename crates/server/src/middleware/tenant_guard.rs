//! The tenant guard (spec: auth-router §2.9, README Decision 10): when `MOLECULE_ORG_ID` is
//! set, a request passes only if it names that org in `X-Molecule-Org-Id`, or is one of the
//! exact allow-listed paths an agent or a probe calls without it; anything else is a 404 with
//! an empty body, so a tenant's server does not reveal itself to requests routed for another.
//!
//! Dropped with the vendor's hosted service: `/cp/` paths and `Fly-Replay-Src`. The
//! "same-origin canvas" pass (`Referer`/`Origin` naming the request's own host while the
//! canvas proxy is on) is forgeable, so it applies only in dev mode (Decision 2).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// Paths that pass without the org header (exact matches only).
pub const ALLOWED_PATHS: &[&str] = &[
    "/health",
    "/buildinfo",
    "/metrics",
    "/registry/register",
    "/registry/heartbeat",
];

/// The header naming the org a request is for.
pub const ORG_HEADER: &str = "x-molecule-org-id";

/// The guard's settings; `None` in the layer's state means no guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantGuard {
    /// The tenant's org id (trimmed, non-empty).
    pub org_id: String,
    /// Whether a same-origin canvas request passes (dev mode with the canvas proxy on).
    pub same_origin_canvas: bool,
}

impl TenantGuard {
    /// The guard for `MOLECULE_ORG_ID`, if it is set to something other than blanks.
    pub fn new(org_id: Option<&str>, same_origin_canvas: bool) -> Option<Self> {
        let org_id = org_id.map(str::trim).filter(|o| !o.is_empty())?;
        Some(Self {
            org_id: org_id.to_owned(),
            same_origin_canvas,
        })
    }

    /// Whether a request for `path` with `headers` passes.
    pub fn allows(&self, path: &str, headers: &HeaderMap) -> bool {
        ALLOWED_PATHS.contains(&path)
            || headers
                .get(ORG_HEADER)
                .is_some_and(|v| v.as_bytes() == self.org_id.as_bytes())
            || (self.same_origin_canvas && same_origin_canvas(headers))
    }
}

/// The layer: 404 with an empty body for a request the guard refuses.
pub async fn tenant_guard(
    State(guard): State<Option<Arc<TenantGuard>>>,
    request: Request,
    next: Next,
) -> Response {
    match guard {
        Some(guard) if !guard.allows(request.uri().path(), request.headers()) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
        _ => next.run(request).await,
    }
}

/// Spec §2.5: `Referer` is `http(s)://<Host>` or starts with `http(s)://<Host>/`, or `Origin`
/// is `http(s)://<Host>`. The host must end where the header's host ends, so
/// `https://h.example.com.evil.com/` does not match `h.example.com`.
fn same_origin_canvas(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let host = text(header::HOST);
    if host.is_empty() {
        return false;
    }
    let referer = text(header::REFERER);
    let origin = text(header::ORIGIN);
    ["http://", "https://"].iter().any(|scheme| {
        let base = format!("{scheme}{host}");
        referer == base
            || referer
                .strip_prefix(&base)
                .is_some_and(|rest| rest.starts_with('/'))
            || origin == base
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn decisions() {
        let guard = TenantGuard::new(Some(" org-1 "), false).unwrap();
        assert!(TenantGuard::new(Some("  "), false).is_none());
        assert!(guard.allows("/health", &HeaderMap::new()));
        assert!(!guard.allows("/health/x", &HeaderMap::new()));
        assert!(!guard.allows("/workspaces", &HeaderMap::new()));
        assert!(guard.allows("/workspaces", &headers(&[(ORG_HEADER, "org-1")])));
        assert!(!guard.allows("/workspaces", &headers(&[(ORG_HEADER, "org-2")])));
        assert!(!guard.allows("/workspaces", &headers(&[(ORG_HEADER, "org-1 ")])));
        assert!(!guard.allows("/cp/orgs", &HeaderMap::new()));
        let same = headers(&[
            ("host", "h.example.com"),
            ("referer", "https://h.example.com/x"),
        ]);
        assert!(
            !guard.allows("/", &same),
            "same-origin trust is dev mode only"
        );
        let dev = TenantGuard::new(Some("org-1"), true).unwrap();
        assert!(dev.allows("/", &same));
        let suffix = headers(&[
            ("host", "h.example.com"),
            ("referer", "https://h.example.com.evil.com/"),
        ]);
        assert!(!dev.allows("/", &suffix));
        let origin = headers(&[
            ("host", "h.example.com"),
            ("origin", "http://h.example.com"),
        ]);
        assert!(dev.allows("/", &origin));
    }
}
