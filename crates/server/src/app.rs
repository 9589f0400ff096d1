//! The application state, the routes and the HTTP pipeline around them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use molecule_store::Store;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{self, Security};
use crate::config::Config;
use crate::events::EventBus;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::middleware::body_limit::RouteBodyLimit;
use crate::middleware::{body_limit, body_timeout, cors, metrics, rate_limit, security_headers};
use crate::routes;
use crate::supervisor::Supervisor;

/// The default request body limit. A route with a larger one is listed in
/// [`ROUTE_BODY_LIMITS`]; a route may lower its own with a `DefaultBodyLimit` layer.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default request body read timeout.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Routes whose body limit is not [`DEFAULT_BODY_LIMIT`]: method, path template, bytes. The
/// pipeline checks `Content-Length` against it before any handler runs, so a larger limit must
/// be declared here (a `DefaultBodyLimit` on the route alone would be refused in front of it).
pub const ROUTE_BODY_LIMITS: &[(&str, &str, usize)] = &[];

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
        }
    }
}

impl HttpSettings {
    /// From the configuration (`CORS_ORIGINS`, `RATE_LIMIT`,
    /// `MOLECULE_BODY_READ_TIMEOUT_SECONDS`).
    pub fn from_config(config: &Config) -> Self {
        Self {
            cors_origins: cors::parse_origins(&config.cors_origins),
            rate_limit: config.rate_limit(),
            body_read_timeout: Duration::from_secs(config.body_read_timeout_seconds),
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
    /// The lifecycle service: the only way to start, stop or restart a workspace.
    pub lifecycle: Lifecycle,
    /// The workspace template directory, if there is one.
    pub configs_dir: Option<Arc<std::path::PathBuf>>,
    /// Settings of the HTTP pipeline.
    pub http: Arc<HttpSettings>,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// The supervisor of the background loops.
    pub supervisor: Supervisor,
    /// The global per-client-IP rate limiter.
    pub rate_limiter: rate_limit::RateLimiter<IpAddr>,
    /// The org-token mint limiter: [`ORG_MINT_LIMIT`] per hour and client IP.
    pub org_mint_limiter: rate_limit::RateLimiter<IpAddr>,
    /// The A2A proxy, queue and delegations.
    pub a2a: molecule_a2a::Proxy,
    /// Langfuse, when configured (`GET …/traces`).
    pub langfuse: Option<Arc<crate::observability::Langfuse>>,
    /// The audit ledger key, when `AUDIT_LEDGER_SALT` is set.
    pub audit_key: Option<crate::observability::AuditKey>,
    /// A client for operator-configured upstreams (Langfuse).
    pub http_client: reqwest::Client,
}

/// Org tokens one client IP may mint per [`ORG_MINT_WINDOW`].
pub const ORG_MINT_LIMIT: u32 = 10;
/// The org-token mint limiter's window.
pub const ORG_MINT_WINDOW: Duration = Duration::from_secs(60 * 60);

impl AppState {
    /// State over an opened store, with no backend and the default [`HttpSettings`].
    pub fn new(store: Store, security: Security) -> Self {
        Self::with_backend(store, security, None, String::from("http://127.0.0.1:8080"))
    }

    /// State with a provisioning backend (or none) and the URL workspaces reach us at.
    pub fn with_backend(
        store: Store,
        security: Security,
        backend: Option<Arc<dyn molecule_provisioner_api::Provisioner>>,
        platform_url: String,
    ) -> Self {
        let events = EventBus::new(store.clone());
        let lifecycle = Lifecycle::new(store.clone(), events.clone(), backend, platform_url);
        let http = HttpSettings::default();
        let platform = crate::a2a_platform::ServerPlatform {
            events: events.clone(),
            lifecycle: lifecycle.clone(),
        };
        let a2a_settings = molecule_a2a::Settings {
            policy: molecule_a2a::ssrf::UrlPolicy {
                dev_mode: security.dev_mode(),
                saas: false,
            },
            ..molecule_a2a::Settings::default()
        };
        let a2a = molecule_a2a::Proxy::new(store.clone(), Arc::new(platform), a2a_settings);
        Self {
            a2a,
            store,
            security,
            events,
            lifecycle,
            configs_dir: None,
            rate_limiter: rate_limit::RateLimiter::new(http.rate_limit, http.rate_window),
            org_mint_limiter: rate_limit::RateLimiter::new(ORG_MINT_LIMIT, ORG_MINT_WINDOW),
            http: Arc::new(http),
            metrics: Metrics::new(),
            supervisor: Supervisor::new(),
            langfuse: None,
            audit_key: None,
            http_client: reqwest::Client::new(),
        }
    }

    /// The same state with Langfuse (traces) and the audit ledger salt, when configured.
    pub fn with_observability(
        mut self,
        langfuse: Option<crate::observability::Langfuse>,
        audit_salt: Option<String>,
    ) -> Self {
        self.langfuse = langfuse.map(Arc::new);
        self.audit_key = audit_salt
            .filter(|s| !s.is_empty())
            .map(crate::observability::AuditKey::new);
        self
    }

    /// The same state with these HTTP settings (and a fresh global limiter for them).
    pub fn with_http(mut self, http: HttpSettings) -> Self {
        self.rate_limiter = rate_limit::RateLimiter::new(http.rate_limit, http.rate_window);
        self.http = Arc::new(http);
        self
    }

    /// The same state with these A2A settings.
    pub fn with_a2a_settings(mut self, settings: molecule_a2a::Settings) -> Self {
        self.a2a = self.a2a.with_settings(settings);
        self
    }

    /// The same state with this template directory.
    pub fn with_configs_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.configs_dir = dir.map(Arc::new);
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

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone.
    Public,
    /// The admin token or a live org token (or dev mode).
    Admin,
    /// The admin token, a live org token, or a token of the workspace in the path (or dev
    /// mode).
    Workspace,
    /// [`Guard::Workspace`], then "own token if any": once the workspace has a live token,
    /// only that workspace's own token passes (never the admin token or an org token).
    WorkspaceOwn,
    /// Anyone while the workspace named in the body has no token; afterwards only its own.
    OwnTokenInBody,
    /// The test-token route: exists only when enabled; the admin token outside dev mode.
    TestToken,
    /// The caller (`X-Workspace-ID`, or the workspace in the path) must present its own
    /// token if it has any; the communication rules decide the rest. Checked in the handler.
    CallerToken,
    /// The A2A routes: an identity (a workspace's own token, or admin/org credentials acting
    /// for the user) outside dev mode; settled in the handler, which also applies the
    /// communication rules.
    A2a,
    /// `GET /ws`: canvas clients need the admin token (header or `?token=`), workspace
    /// clients (`X-Workspace-ID`) their own token if they have any; checked in the handler.
    WebSocket,
}

/// The route table: method, path and guard of every route. The router is built from it, so
/// a route cannot exist without a declared guard, and the auth matrix test walks it.
pub const ROUTES: &[(&str, &str, Guard)] = &[
    ("GET", "/health", Guard::Public),
    ("GET", "/buildinfo", Guard::Public),
    ("GET", "/metrics", Guard::Public),
    ("GET", "/admin/liveness", Guard::Admin),
    ("POST", "/admin/workspace-images/refresh", Guard::Admin),
    ("GET", "/workspaces", Guard::Admin),
    ("POST", "/workspaces", Guard::Admin),
    ("GET", "/workspaces/{id}", Guard::Public),
    ("PATCH", "/workspaces/{id}", Guard::Workspace),
    ("DELETE", "/workspaces/{id}", Guard::Admin),
    ("GET", "/workspaces/{id}/state", Guard::Workspace),
    ("POST", "/workspaces/{id}/restart", Guard::Workspace),
    ("POST", "/workspaces/{id}/pause", Guard::Workspace),
    ("POST", "/workspaces/{id}/resume", Guard::Workspace),
    ("POST", "/workspaces/{id}/hibernate", Guard::Workspace),
    ("POST", "/workspaces/{id}/expand", Guard::Workspace),
    ("POST", "/workspaces/{id}/collapse", Guard::Workspace),
    ("GET", "/workspaces/{id}/budget", Guard::Workspace),
    ("PATCH", "/workspaces/{id}/budget", Guard::Admin),
    ("GET", "/workspaces/{id}/console", Guard::Admin),
    ("GET", "/workspaces/{id}/tokens", Guard::Workspace),
    ("POST", "/workspaces/{id}/tokens", Guard::Workspace),
    (
        "DELETE",
        "/workspaces/{id}/tokens/{token_id}",
        Guard::Workspace,
    ),
    (
        "POST",
        "/admin/workspaces/{id}/bootstrap-failed",
        Guard::Admin,
    ),
    ("GET", "/admin/workspaces/{id}/test-token", Guard::TestToken),
    ("POST", "/registry/register", Guard::OwnTokenInBody),
    ("POST", "/registry/heartbeat", Guard::OwnTokenInBody),
    ("POST", "/registry/update-card", Guard::OwnTokenInBody),
    ("GET", "/registry/discover/{id}", Guard::CallerToken),
    ("GET", "/registry/{id}/peers", Guard::CallerToken),
    ("POST", "/registry/check-access", Guard::Public),
    ("GET", "/events", Guard::Admin),
    ("GET", "/events/{workspace_id}", Guard::Admin),
    ("GET", "/workspaces/{id}/events/stream", Guard::Workspace),
    ("GET", "/ws", Guard::WebSocket),
    ("GET", "/workspaces/{id}/secrets", Guard::Workspace),
    (
        "GET",
        "/workspaces/{id}/secrets/values",
        Guard::WorkspaceOwn,
    ),
    ("POST", "/workspaces/{id}/secrets", Guard::Workspace),
    ("PUT", "/workspaces/{id}/secrets", Guard::Workspace),
    ("DELETE", "/workspaces/{id}/secrets/{key}", Guard::Workspace),
    ("GET", "/workspaces/{id}/model", Guard::Workspace),
    ("PUT", "/workspaces/{id}/model", Guard::Workspace),
    ("GET", "/workspaces/{id}/provider", Guard::Workspace),
    ("PUT", "/workspaces/{id}/provider", Guard::Workspace),
    ("GET", "/settings/secrets", Guard::Admin),
    ("PUT", "/settings/secrets", Guard::Admin),
    ("POST", "/settings/secrets", Guard::Admin),
    ("DELETE", "/settings/secrets/{key}", Guard::Admin),
    ("GET", "/admin/secrets", Guard::Admin),
    ("POST", "/admin/secrets", Guard::Admin),
    ("DELETE", "/admin/secrets/{key}", Guard::Admin),
    ("GET", "/org/tokens", Guard::Admin),
    ("POST", "/org/tokens", Guard::Admin),
    ("DELETE", "/org/tokens/{token_id}", Guard::Admin),
    ("GET", "/workspaces/{id}/activity", Guard::Workspace),
    ("POST", "/workspaces/{id}/activity", Guard::Workspace),
    ("POST", "/workspaces/{id}/notify", Guard::Workspace),
    ("GET", "/workspaces/{id}/session-search", Guard::Workspace),
    ("POST", "/workspaces/{id}/a2a", Guard::A2a),
    ("GET", "/workspaces/{id}/a2a/queue/{queue_id}", Guard::A2a),
    ("POST", "/admin/a2a-queue/drop-stale", Guard::Admin),
    ("POST", "/workspaces/{id}/delegate", Guard::Workspace),
    ("GET", "/workspaces/{id}/delegations", Guard::Workspace),
    (
        "POST",
        "/workspaces/{id}/delegations/record",
        Guard::Workspace,
    ),
    (
        "POST",
        "/workspaces/{id}/delegations/{delegation_id}/update",
        Guard::Workspace,
    ),
    ("POST", "/workspaces/{id}/approvals", Guard::Workspace),
    ("GET", "/workspaces/{id}/approvals", Guard::Workspace),
    (
        "POST",
        "/workspaces/{id}/approvals/{approval_id}/decide",
        Guard::Workspace,
    ),
    ("GET", "/approvals/pending", Guard::Admin),
    ("GET", "/canvas/viewport", Guard::Public),
    ("PUT", "/canvas/viewport", Guard::Admin),
    ("GET", "/workspaces/{id}/config", Guard::Workspace),
    ("PATCH", "/workspaces/{id}/config", Guard::Workspace),
    ("POST", "/workspaces/{id}/agent", Guard::Workspace),
    ("PATCH", "/workspaces/{id}/agent", Guard::Workspace),
    ("DELETE", "/workspaces/{id}/agent", Guard::Workspace),
    ("POST", "/workspaces/{id}/agent/move", Guard::Workspace),
    ("GET", "/workspaces/{id}/metrics", Guard::Workspace),
    ("GET", "/workspaces/{id}/traces", Guard::Workspace),
    ("GET", "/workspaces/{id}/transcript", Guard::Workspace),
    ("GET", "/workspaces/{id}/audit", Guard::Workspace),
];

/// The handler of one table entry.
fn handler(method: &str, path: &str) -> Option<MethodRouter<AppState>> {
    use routes::{
        a2a, activity, admin, agents, approvals, canvas, discovery, events, observe, org_tokens,
        registry, secrets, system, team, tokens, workspaces,
    };
    Some(match (method, path) {
        ("GET", "/health") => get(system::health),
        ("GET", "/buildinfo") => get(system::buildinfo),
        ("GET", "/metrics") => get(system::metrics),
        ("GET", "/admin/liveness") => get(admin::liveness),
        ("POST", "/admin/workspace-images/refresh") => post(admin::refresh_images),
        ("GET", "/workspaces") => get(workspaces::list),
        ("POST", "/workspaces") => post(workspaces::create),
        ("GET", "/workspaces/{id}") => get(workspaces::get),
        ("PATCH", "/workspaces/{id}") => patch(workspaces::update),
        ("DELETE", "/workspaces/{id}") => delete(workspaces::remove),
        ("GET", "/workspaces/{id}/state") => get(workspaces::status),
        ("POST", "/workspaces/{id}/restart") => post(workspaces::restart),
        ("POST", "/workspaces/{id}/pause") => post(workspaces::pause),
        ("POST", "/workspaces/{id}/resume") => post(workspaces::resume),
        ("POST", "/workspaces/{id}/hibernate") => post(workspaces::hibernate),
        ("POST", "/workspaces/{id}/expand") => post(team::expand),
        ("POST", "/workspaces/{id}/collapse") => post(team::collapse),
        ("GET", "/workspaces/{id}/budget") => get(workspaces::budget),
        ("PATCH", "/workspaces/{id}/budget") => patch(workspaces::set_budget),
        ("GET", "/workspaces/{id}/console") => get(workspaces::console),
        ("GET", "/workspaces/{id}/tokens") => get(tokens::list),
        ("POST", "/workspaces/{id}/tokens") => post(tokens::create),
        ("DELETE", "/workspaces/{id}/tokens/{token_id}") => delete(tokens::revoke),
        ("POST", "/admin/workspaces/{id}/bootstrap-failed") => post(workspaces::bootstrap_failed),
        ("GET", "/admin/workspaces/{id}/test-token") => get(tokens::test_token),
        ("POST", "/registry/register") => post(registry::register),
        ("POST", "/registry/heartbeat") => post(registry::heartbeat),
        ("POST", "/registry/update-card") => post(registry::update_card),
        ("GET", "/registry/discover/{id}") => get(discovery::discover),
        ("GET", "/registry/{id}/peers") => get(discovery::peers),
        ("POST", "/registry/check-access") => post(discovery::check_access),
        ("GET", "/events") => get(events::list_all),
        ("GET", "/events/{workspace_id}") => get(events::list_one),
        ("GET", "/workspaces/{id}/events/stream") => get(events::stream),
        ("GET", "/ws") => get(events::ws),
        ("GET", "/workspaces/{id}/secrets") => get(secrets::list),
        ("GET", "/workspaces/{id}/secrets/values") => get(secrets::values),
        ("POST", "/workspaces/{id}/secrets") => post(secrets::set),
        ("PUT", "/workspaces/{id}/secrets") => put(secrets::set),
        ("DELETE", "/workspaces/{id}/secrets/{key}") => delete(secrets::delete),
        ("GET", "/workspaces/{id}/model") => get(secrets::get_model),
        ("PUT", "/workspaces/{id}/model") => put(secrets::set_model),
        ("GET", "/workspaces/{id}/provider") => get(secrets::get_provider),
        ("PUT", "/workspaces/{id}/provider") => put(secrets::set_provider),
        ("GET", "/settings/secrets" | "/admin/secrets") => get(secrets::list_global),
        ("PUT", "/settings/secrets") => put(secrets::set_global),
        ("POST", "/settings/secrets" | "/admin/secrets") => post(secrets::set_global),
        ("DELETE", "/settings/secrets/{key}" | "/admin/secrets/{key}") => {
            delete(secrets::delete_global)
        }
        ("GET", "/org/tokens") => get(org_tokens::list),
        ("POST", "/org/tokens") => post(org_tokens::create),
        ("DELETE", "/org/tokens/{token_id}") => delete(org_tokens::revoke),
        ("GET", "/workspaces/{id}/activity") => get(activity::list),
        ("POST", "/workspaces/{id}/activity") => post(activity::report),
        ("POST", "/workspaces/{id}/notify") => post(activity::notify),
        ("GET", "/workspaces/{id}/session-search") => get(activity::session_search),
        ("POST", "/workspaces/{id}/a2a") => post(a2a::proxy),
        ("GET", "/workspaces/{id}/a2a/queue/{queue_id}") => get(a2a::queue_status),
        ("POST", "/admin/a2a-queue/drop-stale") => post(a2a::drop_stale),
        ("POST", "/workspaces/{id}/delegate") => post(a2a::delegate),
        ("GET", "/workspaces/{id}/delegations") => get(a2a::delegations),
        ("POST", "/workspaces/{id}/delegations/record") => post(a2a::record_delegation),
        ("POST", "/workspaces/{id}/delegations/{delegation_id}/update") => {
            post(a2a::update_delegation)
        }
        ("POST", "/workspaces/{id}/approvals") => post(approvals::create),
        ("GET", "/workspaces/{id}/approvals") => get(approvals::list),
        ("POST", "/workspaces/{id}/approvals/{approval_id}/decide") => post(approvals::decide),
        ("GET", "/approvals/pending") => get(approvals::pending),
        ("GET", "/canvas/viewport") => get(canvas::viewport),
        ("PUT", "/canvas/viewport") => put(canvas::save_viewport),
        ("GET", "/workspaces/{id}/config") => get(canvas::config),
        ("PATCH", "/workspaces/{id}/config") => patch(canvas::patch_config),
        ("POST", "/workspaces/{id}/agent") => post(agents::assign),
        ("PATCH", "/workspaces/{id}/agent") => patch(agents::replace),
        ("DELETE", "/workspaces/{id}/agent") => delete(agents::remove),
        ("POST", "/workspaces/{id}/agent/move") => post(agents::move_to),
        ("GET", "/workspaces/{id}/metrics") => get(observe::metrics),
        ("GET", "/workspaces/{id}/traces") => get(observe::traces),
        ("GET", "/workspaces/{id}/transcript") => get(observe::transcript),
        ("GET", "/workspaces/{id}/audit") => get(observe::audit),
        _ => return None,
    })
}

/// Every route of the API, built from [`ROUTES`] with its route-level guard, before the
/// global layers.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut admin = Router::new();
    let mut workspace = Router::new();
    let mut own = Router::new();
    let mut public = Router::new();
    for (method, path, guard) in ROUTES {
        let Some(h) = handler(method, path) else {
            // A table entry without a handler is a programming error caught by the tests.
            tracing::error!(method, path, "route table entry without a handler");
            continue;
        };
        match guard {
            Guard::Admin => admin = admin.route(path, h),
            Guard::Workspace => workspace = workspace.route(path, h),
            Guard::WorkspaceOwn => own = own.route(path, h),
            Guard::Public
            | Guard::OwnTokenInBody
            | Guard::TestToken
            | Guard::WebSocket
            | Guard::CallerToken
            | Guard::A2a => {
                public = public.route(path, h);
            }
        }
    }
    let admin = admin.route_layer(from_fn_with_state(state.clone(), auth::admin_auth));
    let workspace = workspace.route_layer(from_fn_with_state(state.clone(), auth::workspace_auth));
    // Route layers run outermost-last: workspace auth first, then the own-token check.
    let own = own
        .route_layer(from_fn_with_state(state.clone(), auth::own_workspace_token))
        .route_layer(from_fn_with_state(state.clone(), auth::workspace_auth));
    Router::new()
        .merge(admin)
        .merge(workspace)
        .merge(own)
        .merge(public)
}

/// Puts `routes` inside the global pipeline (spec: auth-router §1.1), outermost first:
/// security headers, request metrics, panic recovery (500, empty body), CORS, the global rate
/// limiter, the body limit (JSON 413, `middleware::body_limit`), the body read timeout (408,
/// `middleware::body_timeout`). Unknown paths and known paths with another method get the
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
        .layer(from_fn_with_state(
            state.clone(),
            body_timeout::body_timeout,
        ))
        .layer(from_fn_with_state(state.clone(), body_limit::body_limit))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_has_a_handler_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for (method, path, _) in ROUTES {
            assert!(
                handler(method, path).is_some(),
                "{method} {path} has no handler"
            );
            assert!(
                seen.insert((method, path)),
                "{method} {path} is listed twice"
            );
        }
    }
}
