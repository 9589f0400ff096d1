//! The HTTP API: the route table (every route once, with its guard and handler), the router
//! built from it, and the global pipeline around it.

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth;
use crate::middleware::tenant_guard::{self, TenantGuard};
use crate::middleware::{body_limit, body_timeout, cors, metrics, rate_limit, security_headers};
use crate::routes::{
    a2a, activity, admin, agents, approvals, artifacts, canvas, channels, chat_files, checkpoints,
    discovery, events, files, github_token, instructions, kv_memory, mcp, memories, memory_backup,
    observe, org_tokens, registry, schedules, secrets, system, team, templates, tokens, webhooks,
    workspaces,
};
use crate::routes::{bundles, org, plugin_allowlist, plugins};
use crate::state::AppState;

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

/// One route of the API.
#[derive(Clone, Copy)]
pub struct Route {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path template (`/workspaces/{id}/…`).
    pub path: &'static str,
    /// Who may call it.
    pub guard: Guard,
    handler: fn() -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.guard)
    }
}

/// A [`Route`] entry: `route!(GET "/path", Guard => handler)`.
macro_rules! route {
    ($method:ident $path:literal, $guard:ident => $handler:path) => {
        Route {
            method: stringify!($method),
            path: $path,
            guard: Guard::$guard,
            handler: || axum::routing::on(axum::routing::MethodFilter::$method, $handler),
        }
    };
}

/// The route table: method, path, guard and handler of every route, each written once. The
/// router is built from it, so a route cannot exist without a declared guard, and the auth
/// matrix test walks it.
pub const ROUTES: &[Route] = &[
    route!(GET "/health", Public => system::health),
    route!(GET "/buildinfo", Public => system::buildinfo),
    route!(GET "/metrics", Public => system::metrics),
    route!(GET "/openapi.json", Public => openapi_json),
    route!(GET "/admin/liveness", Admin => admin::liveness),
    route!(POST "/admin/workspace-images/refresh", Admin => admin::refresh_images),
    route!(GET "/workspaces", Admin => workspaces::list),
    route!(POST "/workspaces", Admin => workspaces::create),
    route!(GET "/workspaces/{id}", Public => workspaces::get),
    route!(PATCH "/workspaces/{id}", Workspace => workspaces::update),
    route!(DELETE "/workspaces/{id}", Admin => workspaces::remove),
    route!(GET "/workspaces/{id}/state", Workspace => workspaces::status),
    route!(POST "/workspaces/{id}/restart", Workspace => workspaces::restart),
    route!(POST "/workspaces/{id}/pause", Workspace => workspaces::pause),
    route!(POST "/workspaces/{id}/resume", Workspace => workspaces::resume),
    route!(POST "/workspaces/{id}/hibernate", Workspace => workspaces::hibernate),
    route!(POST "/workspaces/{id}/expand", Workspace => team::expand),
    route!(POST "/workspaces/{id}/collapse", Workspace => team::collapse),
    route!(GET "/workspaces/{id}/budget", Workspace => workspaces::budget),
    route!(PATCH "/workspaces/{id}/budget", Admin => workspaces::set_budget),
    route!(GET "/workspaces/{id}/console", Admin => workspaces::console),
    route!(GET "/workspaces/{id}/external/connection", Admin => workspaces::external_connection),
    route!(POST "/workspaces/{id}/external/rotate", Admin => workspaces::rotate_external),
    route!(GET "/workspaces/{id}/tokens", Workspace => tokens::list),
    route!(POST "/workspaces/{id}/tokens", Workspace => tokens::create),
    route!(DELETE "/workspaces/{id}/tokens/{token_id}", Workspace => tokens::revoke),
    route!(POST "/admin/workspaces/{id}/bootstrap-failed", Admin => workspaces::bootstrap_failed),
    route!(GET "/admin/workspaces/{id}/test-token", TestToken => tokens::test_token),
    route!(POST "/registry/register", OwnTokenInBody => registry::register),
    route!(POST "/registry/heartbeat", OwnTokenInBody => registry::heartbeat),
    route!(POST "/registry/update-card", OwnTokenInBody => registry::update_card),
    route!(GET "/registry/discover/{id}", CallerToken => discovery::discover),
    route!(GET "/registry/{id}/peers", CallerToken => discovery::peers),
    route!(POST "/registry/check-access", Public => discovery::check_access),
    route!(GET "/events", Admin => events::list_all),
    route!(GET "/events/{workspace_id}", Admin => events::list_one),
    route!(GET "/workspaces/{id}/events/stream", Workspace => events::stream),
    route!(GET "/ws", WebSocket => events::ws),
    route!(GET "/workspaces/{id}/secrets", Workspace => secrets::list),
    route!(GET "/workspaces/{id}/secrets/values", WorkspaceOwn => secrets::values),
    route!(POST "/workspaces/{id}/secrets", Workspace => secrets::set),
    route!(PUT "/workspaces/{id}/secrets", Workspace => secrets::set),
    route!(DELETE "/workspaces/{id}/secrets/{key}", Workspace => secrets::delete),
    route!(GET "/workspaces/{id}/model", Workspace => secrets::get_model),
    route!(PUT "/workspaces/{id}/model", Workspace => secrets::set_model),
    route!(GET "/workspaces/{id}/provider", Workspace => secrets::get_provider),
    route!(PUT "/workspaces/{id}/provider", Workspace => secrets::set_provider),
    route!(GET "/settings/secrets", Admin => secrets::list_global),
    route!(PUT "/settings/secrets", Admin => secrets::set_global),
    route!(POST "/settings/secrets", Admin => secrets::set_global),
    route!(DELETE "/settings/secrets/{key}", Admin => secrets::delete_global),
    route!(GET "/admin/secrets", Admin => secrets::list_global),
    route!(POST "/admin/secrets", Admin => secrets::set_global),
    route!(DELETE "/admin/secrets/{key}", Admin => secrets::delete_global),
    route!(GET "/org/tokens", Admin => org_tokens::list),
    route!(POST "/org/tokens", Admin => org_tokens::create),
    route!(DELETE "/org/tokens/{token_id}", Admin => org_tokens::revoke),
    route!(GET "/workspaces/{id}/activity", Workspace => activity::list),
    route!(POST "/workspaces/{id}/activity", Workspace => activity::report),
    route!(POST "/workspaces/{id}/notify", Workspace => activity::notify),
    route!(GET "/workspaces/{id}/session-search", Workspace => activity::session_search),
    route!(POST "/workspaces/{id}/a2a", A2a => a2a::proxy),
    route!(GET "/workspaces/{id}/a2a/queue/{queue_id}", A2a => a2a::queue_status),
    route!(POST "/admin/a2a-queue/drop-stale", Admin => a2a::drop_stale),
    route!(POST "/workspaces/{id}/delegate", Workspace => a2a::delegate),
    route!(GET "/workspaces/{id}/delegations", Workspace => a2a::delegations),
    route!(POST "/workspaces/{id}/delegations/record", Workspace => a2a::record_delegation),
    route!(POST "/workspaces/{id}/delegations/{delegation_id}/update", Workspace => a2a::update_delegation),
    route!(POST "/workspaces/{id}/approvals", Workspace => approvals::create),
    route!(GET "/workspaces/{id}/approvals", Workspace => approvals::list),
    route!(POST "/workspaces/{id}/approvals/{approval_id}/decide", Workspace => approvals::decide),
    route!(GET "/approvals/pending", Admin => approvals::pending),
    route!(GET "/canvas/viewport", Public => canvas::viewport),
    route!(PUT "/canvas/viewport", Admin => canvas::save_viewport),
    route!(GET "/workspaces/{id}/config", Workspace => canvas::config),
    route!(PATCH "/workspaces/{id}/config", Workspace => canvas::patch_config),
    route!(POST "/workspaces/{id}/agent", Workspace => agents::assign),
    route!(PATCH "/workspaces/{id}/agent", Workspace => agents::replace),
    route!(DELETE "/workspaces/{id}/agent", Workspace => agents::remove),
    route!(POST "/workspaces/{id}/agent/move", Workspace => agents::move_to),
    route!(GET "/workspaces/{id}/metrics", Workspace => observe::metrics),
    route!(GET "/workspaces/{id}/traces", Workspace => observe::traces),
    route!(GET "/workspaces/{id}/transcript", Workspace => observe::transcript),
    route!(GET "/workspaces/{id}/audit", Workspace => observe::audit),
    route!(GET "/workspaces/{id}/schedules", Workspace => schedules::list),
    route!(POST "/workspaces/{id}/schedules", Workspace => schedules::create),
    route!(GET "/workspaces/{id}/schedules/health", CallerToken => schedules::workspace_health),
    route!(PATCH "/workspaces/{id}/schedules/{schedule_id}", Workspace => schedules::update),
    route!(DELETE "/workspaces/{id}/schedules/{schedule_id}", Workspace => schedules::remove),
    route!(POST "/workspaces/{id}/schedules/{schedule_id}/run", Workspace => schedules::run),
    route!(GET "/workspaces/{id}/schedules/{schedule_id}/history", Workspace => schedules::history),
    route!(GET "/admin/schedules/health", Admin => schedules::admin_health),
    route!(GET "/channels/adapters", Public => channels::adapters),
    route!(GET "/workspaces/{id}/channels", Workspace => channels::list),
    route!(POST "/workspaces/{id}/channels", Workspace => channels::create),
    route!(PATCH "/workspaces/{id}/channels/{channel_id}", Workspace => channels::update),
    route!(DELETE "/workspaces/{id}/channels/{channel_id}", Workspace => channels::remove),
    route!(POST "/workspaces/{id}/channels/{channel_id}/send", Workspace => channels::send),
    route!(POST "/workspaces/{id}/channels/{channel_id}/test", Workspace => channels::test),
    route!(POST "/channels/discover", Admin => channels::discover),
    route!(POST "/webhooks/github", Public => webhooks::github),
    route!(POST "/webhooks/github/{id}", Public => webhooks::github_for),
    route!(POST "/webhooks/{type}", Public => webhooks::channel),
    route!(POST "/workspaces/{id}/memories", Workspace => memories::commit),
    route!(GET "/workspaces/{id}/memories", Workspace => memories::recall),
    route!(POST "/workspaces/{id}/mcp", Workspace => mcp::post),
    route!(GET "/workspaces/{id}/mcp/stream", Workspace => mcp::stream),
    route!(POST "/workspaces/{id}/artifacts", Workspace => artifacts::link),
    route!(GET "/workspaces/{id}/artifacts", Workspace => artifacts::get),
    route!(POST "/workspaces/{id}/artifacts/fork", Workspace => artifacts::fork),
    route!(POST "/workspaces/{id}/artifacts/token", Workspace => artifacts::token),
    route!(DELETE "/workspaces/{id}/memories/{memory_id}", Workspace => memories::delete),
    route!(GET "/workspaces/{id}/memory", Workspace => kv_memory::list),
    route!(GET "/workspaces/{id}/memory/{key}", Workspace => kv_memory::get),
    route!(POST "/workspaces/{id}/memory", Workspace => kv_memory::set),
    route!(DELETE "/workspaces/{id}/memory/{key}", Workspace => kv_memory::delete),
    route!(GET "/admin/memories/export", Admin => memory_backup::export),
    route!(POST "/admin/memories/import", Admin => memory_backup::import),
    route!(POST "/workspaces/{id}/checkpoints", Workspace => checkpoints::upsert),
    route!(GET "/workspaces/{id}/checkpoints/latest", Workspace => checkpoints::latest),
    route!(GET "/workspaces/{id}/checkpoints/{workflow_id}", Workspace => checkpoints::list),
    route!(DELETE "/workspaces/{id}/checkpoints/{workflow_id}", Workspace => checkpoints::delete),
    route!(GET "/instructions", Admin => instructions::list),
    route!(POST "/instructions", Admin => instructions::create),
    route!(PUT "/instructions/{id}", Admin => instructions::update),
    route!(DELETE "/instructions/{id}", Admin => instructions::delete),
    route!(GET "/workspaces/{id}/instructions/resolve", Workspace => instructions::resolve),
    route!(GET "/workspaces/{id}/files", Workspace => files::list),
    route!(PUT "/workspaces/{id}/files", Workspace => files::replace),
    route!(GET "/workspaces/{id}/files/{*path}", Workspace => files::read),
    route!(PUT "/workspaces/{id}/files/{*path}", Workspace => files::write),
    route!(DELETE "/workspaces/{id}/files/{*path}", Workspace => files::delete),
    route!(GET "/workspaces/{id}/shared-context", Workspace => files::shared_context),
    route!(GET "/workspaces/{id}/terminal", Workspace => files::terminal::open),
    route!(GET "/workspaces/{id}/terminal/diagnose", Workspace => files::terminal::diagnose),
    route!(GET "/templates", Admin => templates::list),
    route!(POST "/templates/import", Admin => templates::import),
    route!(POST "/workspaces/{id}/chat/uploads", Workspace => chat_files::upload),
    route!(GET "/workspaces/{id}/chat/download", Workspace => chat_files::download),
    route!(GET "/admin/github-installation-token", Admin => github_token::admin_token),
    route!(GET "/workspaces/{id}/github-installation-token", Workspace => github_token::workspace_token),
    route!(GET "/org/templates", Admin => org::list),
    route!(POST "/org/import", Admin => org::import),
    route!(GET "/bundles/export/{id}", Admin => bundles::export),
    route!(POST "/bundles/import", Admin => bundles::import),
    route!(GET "/plugins", Public => plugins::list),
    route!(GET "/plugins/sources", Public => plugins::sources),
    route!(GET "/workspaces/{id}/plugins", Workspace => plugins::installed_list),
    route!(GET "/workspaces/{id}/plugins/available", Workspace => plugins::available),
    route!(GET "/workspaces/{id}/plugins/compatibility", Workspace => plugins::compatibility),
    route!(POST "/workspaces/{id}/plugins", Workspace => plugins::install),
    route!(DELETE "/workspaces/{id}/plugins/{name}", Workspace => plugins::uninstall),
    route!(GET "/workspaces/{id}/plugins/{name}/download", WorkspaceOwn => plugins::download),
    route!(GET "/orgs/{id}/plugins/allowlist", Admin => plugin_allowlist::get),
    route!(PUT "/orgs/{id}/plugins/allowlist", Admin => plugin_allowlist::put),
];

impl Guard {
    /// The guard as OpenAPI security requirements.
    pub fn access(self) -> crate::openapi::Access {
        use crate::openapi::Access;
        match self {
            Guard::Public => Access::Public,
            Guard::Admin | Guard::TestToken => Access::Admin,
            Guard::WorkspaceOwn => Access::WorkspaceOnly,
            Guard::Workspace | Guard::A2a | Guard::WebSocket => Access::AdminOrWorkspace,
            Guard::OwnTokenInBody | Guard::CallerToken => Access::WorkspaceIfAny,
        }
    }
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    crate::openapi::document(ROUTES.iter().map(|r| crate::openapi::Operation {
        method: r.method,
        path: r.path,
        access: r.guard.access(),
        guard: format!("{:?}", r.guard),
    }))
}

/// `GET /openapi.json`: [`openapi_document`], serialised once.
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    crate::openapi::json_response(&DOCUMENT, openapi_document)
}

/// Every route of the API, built from [`ROUTES`] with its route-level guard, before the
/// global layers.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut admin = Router::new();
    let mut workspace = Router::new();
    let mut own = Router::new();
    let mut public = Router::new();
    for route in ROUTES {
        let (path, handler) = (route.path, (route.handler)());
        match route.guard {
            Guard::Admin => admin = admin.route(path, handler),
            Guard::Workspace => workspace = workspace.route(path, handler),
            Guard::WorkspaceOwn => own = own.route(path, handler),
            Guard::Public
            | Guard::OwnTokenInBody
            | Guard::TestToken
            | Guard::WebSocket
            | Guard::CallerToken
            | Guard::A2a => public = public.route(path, handler),
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
/// limiter, the tenant guard (`MOLECULE_ORG_ID`: 404, empty body), the body limit (JSON 413,
/// `middleware::body_limit`), the body read timeout (408,
/// `middleware::body_timeout`). Unknown paths and known paths with another method get the
/// plain-text 404 (an unknown path goes to the canvas proxy instead when one is configured); a
/// known path with a trailing slash is redirected to the path without it.
pub fn with_pipeline(routes: Router<AppState>, state: AppState) -> Router {
    // The probe answers "this route exists for this method" without running anything. The
    // marker layer also wraps each path's default method fallback, which is then replaced by
    // the plain 404 (a layered default fallback is still the default).
    let probe: Router = routes
        .clone()
        .route_layer(from_fn(|_: Request, _: axum::middleware::Next| {
            system::probe_marker()
        }))
        .method_not_allowed_fallback(system::not_found)
        .with_state(state.clone());
    // Dev mode: no global limiter.
    let global_limiter = (!state.security.dev_mode()).then(|| state.rate_limiter.clone());
    let canvas = state.canvas_proxy.clone();
    // Same-origin canvas trust (forgeable headers) only in dev mode, with the canvas proxy on.
    let tenant = TenantGuard::new(
        state.http.tenant_org_id.as_deref(),
        state.security.dev_mode() && canvas.is_some(),
    )
    .map(std::sync::Arc::new);
    let app: Router = routes
        .method_not_allowed_fallback(system::not_found)
        .fallback(move |request: Request| system::fallback(probe.clone(), canvas.clone(), request))
        .layer(from_fn_with_state(
            state.http.clone(),
            body_timeout::body_timeout,
        ))
        .layer(from_fn_with_state(
            state.http.clone(),
            body_limit::body_limit,
        ))
        .layer(from_fn_with_state(tenant, tenant_guard::tenant_guard))
        .layer(from_fn_with_state(global_limiter, rate_limit::global))
        .layer(from_fn_with_state(state.http.clone(), cors::cors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.metrics.clone(), metrics::record))
        .layer(from_fn(crate::middleware::trace::http_span))
        .layer(from_fn(security_headers::security_headers))
        .with_state(state);
    // Layers of a router wrap each route inside its method router, which adds `Allow` to a
    // wrong-method answer afterwards; this outer router sees the final answer.
    Router::new()
        .fallback_service(app)
        .layer(from_fn(system::no_allow_on_404))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(
                seen.insert((route.method, route.path)),
                "{route:?} is listed twice"
            );
        }
    }
}
