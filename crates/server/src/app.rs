//! The application state, the routes and the HTTP pipeline around them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use molecule_store::Store;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{self, Security};
use crate::config::Config;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::middleware::{cors, metrics, rate_limit, security_headers};
use crate::routes;
use crate::supervisor::Supervisor;

/// The default request body limit (routes may set their own with `DefaultBodyLimit`).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

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
}

impl Default for HttpSettings {
    /// The reference's defaults: the two localhost canvas origins, 600 requests a minute, 1 MiB.
    fn default() -> Self {
        Self {
            cors_origins: cors::parse_origins("http://localhost:3000,http://localhost:3001"),
            rate_limit: rate_limit::DEFAULT_RATE_LIMIT,
            rate_window: rate_limit::RATE_WINDOW,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

impl HttpSettings {
    /// From the configuration (`CORS_ORIGINS`, `RATE_LIMIT`).
    pub fn from_config(config: &Config) -> Self {
        Self {
            cors_origins: cors::parse_origins(&config.cors_origins),
            rate_limit: config.rate_limit(),
            ..Self::default()
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Security settings fixed at boot.
    pub security: Security,
    /// The event bus.
    pub events: EventBus,
    /// Settings of the HTTP pipeline.
    pub http: Arc<HttpSettings>,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// The supervisor of the background loops.
    pub supervisor: Supervisor,
    /// The global per-client-IP rate limiter.
    pub rate_limiter: rate_limit::RateLimiter<IpAddr>,
}

impl AppState {
    /// State over an opened store, with the default [`HttpSettings`].
    pub fn new(store: Store, security: Security) -> Self {
        let events = EventBus::new(store.clone());
        let http = HttpSettings::default();
        Self {
            store,
            security,
            events,
            rate_limiter: rate_limit::RateLimiter::new(http.rate_limit, http.rate_window),
            http: Arc::new(http),
            metrics: Metrics::new(),
            supervisor: Supervisor::new(),
        }
    }

    /// The same state with these HTTP settings (and a fresh global limiter for them).
    pub fn with_http(mut self, http: HttpSettings) -> Self {
        self.rate_limiter = rate_limit::RateLimiter::new(http.rate_limit, http.rate_window);
        self.http = Arc::new(http);
        self
    }

    /// The same state with this supervisor.
    pub fn with_supervisor(mut self, supervisor: Supervisor) -> Self {
        self.supervisor = supervisor;
        self
    }
}

/// The whole HTTP API: [`routes`] inside [`with_pipeline`].
pub fn router(state: AppState) -> Router {
    with_pipeline(routes(&state), state)
}

/// Every route of the API, with its route-level guards, before the global layers.
pub fn routes(state: &AppState) -> Router<AppState> {
    let admin = || from_fn_with_state(state.clone(), auth::admin_auth);
    Router::new()
        .route("/health", get(routes::system::health))
        .route("/buildinfo", get(routes::system::buildinfo))
        .route("/metrics", get(routes::system::metrics))
        .route(
            "/admin/liveness",
            get(routes::admin::liveness).route_layer(admin()),
        )
}

/// Puts `routes` inside the global pipeline (spec: auth-router §1.1), outermost first:
/// security headers, request metrics, panic recovery (500, empty body), CORS, the global rate
/// limiter, the default body limit. Unknown paths and known paths with another method get the
/// plain-text 404; a known path with a trailing slash is redirected to the path without it.
pub fn with_pipeline(routes: Router<AppState>, state: AppState) -> Router {
    // The probe answers "this route exists for this method" without running anything. The
    // marker layer also wraps each path's default method fallback, which is then replaced by
    // the plain 404 (a layered default fallback is still the default).
    let probe: Router = routes
        .clone()
        .route_layer(from_fn(|_: Request, _: axum::middleware::Next| {
            routes::system::probe_marker()
        }))
        .method_not_allowed_fallback(routes::system::not_found)
        .with_state(state.clone());
    let app: Router = routes
        .method_not_allowed_fallback(routes::system::not_found)
        .fallback(move |request: Request| routes::system::fallback(probe.clone(), request))
        .layer(DefaultBodyLimit::max(state.http.body_limit))
        .layer(from_fn_with_state(state.clone(), rate_limit::global))
        .layer(from_fn_with_state(state.clone(), cors::cors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.clone(), metrics::record))
        .layer(from_fn(security_headers::security_headers))
        .with_state(state);
    // Layers of a router wrap each route inside its method router, which adds `Allow` to a
    // wrong-method answer afterwards; this outer router sees the final answer.
    Router::new()
        .fallback_service(app)
        .layer(from_fn(routes::system::no_allow_on_404))
}

/// Starts the background loops of the HTTP layer (the rate-limit janitor).
pub fn spawn_background(state: &AppState) {
    rate_limit::spawn_janitor(state);
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}
