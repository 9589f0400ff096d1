//! System routes: health, build information, and the JSON 404.

use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};

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

/// Any unknown route: the reference's plain-text 404, which clients may match on.
pub(crate) async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "404 page not found")
}
