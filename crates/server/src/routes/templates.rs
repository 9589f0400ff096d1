//! `GET /templates` and `POST /templates/import` (admin, spec templates §1.1) over the
//! configs directory; the work is in [`crate::templates`].

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ok_json};
use crate::extract::{INVALID_BODY, JsonBody};
use crate::state::AppState;
use crate::templates::{catalog, import};

/// `GET /templates`: the palette; no configs directory is an empty one.
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let Some(dir) = state.configs_dir.clone() else {
        return Ok(ok_json(StatusCode::OK, json!([])));
    };
    let entries = tokio::task::spawn_blocking(move || catalog::list(&dir))
        .await
        .map_err(|e| ApiError::internal("failed to list templates", &e))?;
    Ok(ok_json(StatusCode::OK, Value::Array(entries)))
}

/// `POST /templates/import` body.
#[derive(Debug, Deserialize)]
pub(crate) struct ImportBody {
    name: Option<String>,
    files: Option<BTreeMap<String, String>>,
}

/// `POST /templates/import`: a new template directory from `{name, files}`; 201
/// `{"status":"imported","id","name"}`.
pub(crate) async fn import(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ImportBody>,
) -> ApiResult<Response> {
    let (Some(name), Some(files)) = (body.name.filter(|n| !n.is_empty()), body.files) else {
        return Err(ApiError::bad_request(INVALID_BODY));
    };
    let plan = import::plan(&name, files).map_err(refusal)?;
    let Some(root) = state.configs_dir.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no templates directory configured (CONFIGS_DIR)",
        ));
    };
    let id = plan.id.clone();
    let sent_name = name.clone();
    tokio::task::spawn_blocking(move || import::write(&root, &sent_name, &plan))
        .await
        .map_err(|e| ApiError::internal("failed to write config.yaml", &e))?
        .map_err(refusal)?;
    tracing::info!(template = %id, "templates: imported");
    Ok(ok_json(
        StatusCode::CREATED,
        json!({"status": "imported", "id": id, "name": name}),
    ))
}

fn refusal(e: import::ImportError) -> ApiError {
    match e {
        import::ImportError::TooManyFiles(_) => ApiError::bad_request(e.to_string()),
        import::ImportError::BadPath => ApiError::bad_request(INVALID_BODY),
        import::ImportError::Exists(id) => {
            ApiError::conflict("template already exists").with("id", id)
        }
        import::ImportError::Write(cause) => {
            ApiError::internal("failed to write config.yaml", &cause)
        }
    }
}
