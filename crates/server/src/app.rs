//! The application state and the router.

use axum::Router;
use axum::routing::get;
use molecule_store::Store;

use crate::auth::Security;
use crate::events::EventBus;
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
}

impl AppState {
    /// State over an opened store.
    pub fn new(store: Store, security: Security) -> Self {
        let events = EventBus::new(store.clone());
        Self {
            store,
            security,
            events,
        }
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(routes::system::health))
        .route("/buildinfo", get(routes::system::buildinfo))
        .merge(routes::events::router(&state))
        .fallback(routes::system::not_found)
        .with_state(state)
}
