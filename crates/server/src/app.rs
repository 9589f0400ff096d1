//! The application state and the router.

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, patch, post};
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

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    use routes::{registry, tokens, workspaces};
    let admin = Router::new()
        .route(
            "/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route("/workspaces/{id}", delete(workspaces::remove))
        .route("/workspaces/{id}/budget", patch(workspaces::set_budget))
        .route("/workspaces/{id}/console", get(workspaces::console))
        .route(
            "/admin/workspaces/{id}/bootstrap-failed",
            post(workspaces::bootstrap_failed),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::admin_auth));
    let workspace = Router::new()
        .route("/workspaces/{id}", patch(workspaces::update))
        .route("/workspaces/{id}/state", get(workspaces::status))
        .route("/workspaces/{id}/restart", post(workspaces::restart))
        .route("/workspaces/{id}/pause", post(workspaces::pause))
        .route("/workspaces/{id}/resume", post(workspaces::resume))
        .route("/workspaces/{id}/hibernate", post(workspaces::hibernate))
        .route("/workspaces/{id}/budget", get(workspaces::budget))
        .route(
            "/workspaces/{id}/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route("/workspaces/{id}/tokens/{token_id}", delete(tokens::revoke))
        .route_layer(from_fn_with_state(state.clone(), auth::workspace_auth));
    let public = Router::new()
        .route("/health", get(routes::system::health))
        .route("/buildinfo", get(routes::system::buildinfo))
        .route("/workspaces/{id}", get(workspaces::get))
        .route("/registry/register", post(registry::register))
        .route("/registry/heartbeat", post(registry::heartbeat))
        .route("/registry/update-card", post(registry::update_card))
        .route("/admin/workspaces/{id}/test-token", get(tokens::test_token));
    Router::new()
        .merge(admin)
        .merge(workspace)
        .merge(public)
        .fallback(routes::system::not_found)
        .with_state(state)
}
