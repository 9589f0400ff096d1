//! The request metrics recorder: counts every answer under its method, route template and
//! final status, with its latency.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{HttpLabels, Metrics};

/// The `path` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The recorder layer. It must be added with `Router::layer` so that it sees [`MatchedPath`].
pub async fn record(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| route_template(p.as_str()));
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::debug!(%method, %path, status, ?elapsed, "request");
    metrics.record_request(
        HttpLabels {
            method,
            path,
            status,
        },
        elapsed.as_secs_f64(),
    );
    response
}

/// An axum route template in the reference's notation: `{id}` → `:id`, `{*path}` → `*path`.
pub fn route_template(axum_path: &str) -> String {
    axum_path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if name.starts_with('*') => name.to_owned(),
                Some(name) => format!(":{name}"),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_use_the_reference_notation() {
        assert_eq!(route_template("/health"), "/health");
        assert_eq!(
            route_template("/workspaces/{id}/activity"),
            "/workspaces/:id/activity"
        );
        assert_eq!(route_template("/cp/{*path}"), "/cp/*path");
    }
}
