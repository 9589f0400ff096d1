//! Admin routes of the system area.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::Runtime;
use molecule_provisioner_api::{ImageRefresh, ProvisionError};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{ApiError, ApiResult, ok_json};
use crate::extract::Query;
use crate::state::AppState;

/// `GET /admin/liveness` (admin): the last completed tick of each supervised loop and of the
/// store's group-commit writer (`write-behind`),
/// `{"subsystems":{name:{"last_tick_at":RFC3339,"seconds_ago":n}}}`.
pub(crate) async fn liveness(State(state): State<AppState>) -> Json<Value> {
    let now = OffsetDateTime::now_utc();
    let mut ticks = state.supervisor.last_ticks();
    if let Some(at) = state.store.last_flush() {
        ticks.insert("write-behind", at);
    }
    let subsystems: Map<String, Value> = ticks
        .into_iter()
        .map(|(name, at)| {
            let at_text = at.format(&Rfc3339).unwrap_or_default();
            let seconds_ago = (now - at).whole_seconds().max(0);
            (
                name.to_owned(),
                json!({ "last_tick_at": at_text, "seconds_ago": seconds_ago }),
            )
        })
        .collect();
    Json(json!({ "subsystems": subsystems }))
}

/// The runtimes whose images can be refreshed, alphabetical.
fn refreshable_runtimes() -> Vec<&'static str> {
    let mut known: Vec<&'static str> = Runtime::BUILTIN
        .iter()
        .copied()
        .filter(|r| *r != Runtime::EXTERNAL)
        .collect();
    known.sort_unstable();
    known
}

fn refresh_view(r: &ImageRefresh) -> Value {
    json!({ "pulled": r.pulled, "failed": r.failed, "recreated": r.recreated })
}

/// `POST /admin/workspace-images/refresh` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RefreshQuery {
    runtime: Option<String>,
    recreate: Option<String>,
}

/// `POST /admin/workspace-images/refresh?runtime=<r>&recreate=<bool>` (admin): pulls the
/// latest image of one runtime (or all), and unless `recreate` is anything but `true`, removes
/// the containers running a refreshed image so the health sweep restarts them. 200
/// `{pulled,failed,recreated}` (runtime names; container names); a backend without images
/// (or none): 404, as the route does not exist there; a failed container listing: 500 with
/// `partial_result`. The daemon's error text is logged, never returned.
pub(crate) async fn refresh_images(
    State(state): State<AppState>,
    Query(query): Query<RefreshQuery>,
) -> ApiResult<Response> {
    let known = refreshable_runtimes();
    let runtimes: Vec<String> = match query
        .runtime
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r) if known.contains(&r) => vec![r.to_owned()],
        Some(r) => {
            return Err(ApiError::bad_request(format!("unknown runtime: {r}"))
                .with("known_runtimes", known));
        }
        None => known.iter().map(|r| (*r).to_owned()).collect(),
    };
    let recreate = query.recreate.is_none_or(|v| v == "true");
    match state.lifecycle.refresh_images(&runtimes, recreate).await {
        Ok(result) => Ok(ok_json(StatusCode::OK, refresh_view(&result))),
        Err(e) if matches!(e.cause, ProvisionError::Unsupported(_)) => Err(ApiError::not_found(
            "image refresh needs the Docker backend",
        )),
        Err(e) => {
            tracing::error!(error = %e, "image refresh: stopped part way");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "image refresh failed: cannot list workspace containers",
            )
            .with("partial_result", refresh_view(&e.partial)))
        }
    }
}
