//! The application state and the router.

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, patch, post};
use molecule_store::Store;

use crate::auth::{self, Security};
use crate::events::EventBus;
use crate::lifecycle::Lifecycle;
use crate::routes;

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
}

impl AppState {
    /// State over an opened store.
    pub fn new(store: Store, security: Security) -> Self {
        Self::with_backend(store, security, None, String::from("http://127.0.0.1:8080"))
    }

    /// State with a provisioning backend (or none) and the URL workspaces reach us at.
    pub fn with_backend(
        store: Store,
        security: Security,
        backend: Option<std::sync::Arc<dyn molecule_provisioner_api::Provisioner>>,
        platform_url: String,
    ) -> Self {
        let events = EventBus::new(store.clone());
        let lifecycle = Lifecycle::new(store.clone(), events.clone(), backend, platform_url);
        Self {
            store,
            security,
            events,
            lifecycle,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone.
    Public,
    /// The admin token (or dev mode).
    Admin,
    /// The admin token or a token of the workspace in the path (or dev mode).
    Workspace,
    /// Anyone while the workspace named in the body has no token; afterwards only its own.
    OwnTokenInBody,
    /// The test-token route: exists only when enabled; the admin token outside dev mode.
    TestToken,
}

/// The route table: method, path and guard of every route. The router is built from it, so
/// a route cannot exist without a declared guard, and the auth matrix test walks it.
pub const ROUTES: &[(&str, &str, Guard)] = &[
    ("GET", "/health", Guard::Public),
    ("GET", "/buildinfo", Guard::Public),
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
];

/// The handler of one table entry.
fn handler(method: &str, path: &str) -> Option<MethodRouter<AppState>> {
    use routes::{registry, system, tokens, workspaces};
    Some(match (method, path) {
        ("GET", "/health") => get(system::health),
        ("GET", "/buildinfo") => get(system::buildinfo),
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
        _ => return None,
    })
}

/// The whole HTTP API, built from [`ROUTES`].
pub fn router(state: AppState) -> Router {
    let mut admin = Router::new();
    let mut workspace = Router::new();
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
            Guard::Public | Guard::OwnTokenInBody | Guard::TestToken => {
                public = public.route(path, h);
            }
        }
    }
    let admin = admin.route_layer(from_fn_with_state(state.clone(), auth::admin_auth));
    let workspace = workspace.route_layer(from_fn_with_state(state.clone(), auth::workspace_auth));
    Router::new()
        .merge(admin)
        .merge(workspace)
        .merge(public)
        .fallback(routes::system::not_found)
        .with_state(state)
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
