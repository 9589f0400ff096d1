//! System routes: health, build information, metrics, and the plain-text 404.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /health`: the process is up and serving.
pub(crate) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /buildinfo`: the commit and version this binary was built from.
pub(crate) async fn buildinfo() -> Json<Value> {
    Json(json!({
        "git_sha": env!("MOLECULE_GIT_SHA"),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// `GET /metrics`: every series in the Prometheus (OpenMetrics) text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal("failed to encode metrics", &e).into_response(),
    }
}

/// Any unknown route, and a known path with a method it does not have: the reference's
/// plain-text 404, which clients may match on.
pub(crate) async fn not_found(request: Request) -> Response {
    discard_body(request).await;
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

/// Reads and drops a request's body (up to the default limit; the body-limit layer already
/// refused a larger declared one), so a client still sending it gets the answer instead of a
/// connection reset.
async fn discard_body(request: Request) {
    let _ = axum::body::to_bytes(request.into_body(), crate::middleware::DEFAULT_BODY_LIMIT).await;
}

/// Drops the `Allow` header axum puts on a wrong-method answer: that answer is the plain 404.
pub(crate) async fn no_allow_on_404(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::NOT_FOUND {
        response.headers_mut().remove(header::ALLOW);
    }
    response
}

/// Marks a probe answer: a route (path and method) exists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteExists;

/// The probe router's route layer: answers at once, without running guards or handlers.
pub(crate) async fn probe_marker() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(RouteExists);
    response
}

/// The fallback: a path with a trailing slash whose slash-less form is a route for this method
/// is redirected there (301 for GET, 307 otherwise, the query kept); anything else goes to the
/// canvas proxy when there is one, else is the plain-text 404. `probe` is the router with
/// [`probe_marker`] as its route layer.
pub(crate) async fn fallback(
    probe: axum::Router,
    canvas: Option<std::sync::Arc<crate::canvas_proxy::CanvasProxy>>,
    request: Request,
) -> Response {
    use tower::ServiceExt;

    let path = request.uri().path().to_owned();
    if let Some(target) = path.strip_suffix('/').filter(|t| !t.is_empty()) {
        let location = match request.uri().query() {
            Some(query) => format!("{target}?{query}"),
            None => target.to_owned(),
        };
        let probe_request = Request::builder()
            .method(request.method().clone())
            .uri(&location)
            .body(Body::empty());
        if let Ok(probe_request) = probe_request
            && let Ok(answer) = probe.oneshot(probe_request).await
            && answer.extensions().get::<RouteExists>().is_some()
            && let Ok(location) = HeaderValue::from_str(&location)
        {
            let status = if request.method() == Method::GET {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::TEMPORARY_REDIRECT
            };
            discard_body(request).await;
            return (status, [(header::LOCATION, location)]).into_response();
        }
    }
    match canvas {
        Some(canvas) => canvas.forward(request).await,
        None => not_found(request).await,
    }
}
