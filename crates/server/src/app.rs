//! The application state and the router.

use axum::Router;
use axum::routing::get;
use molecule_store::Store;

use crate::routes;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
}

impl AppState {
    /// State over an opened store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(routes::system::health))
        .route("/buildinfo", get(routes::system::buildinfo))
        .fallback(routes::system::not_found)
        .with_state(state)
}
