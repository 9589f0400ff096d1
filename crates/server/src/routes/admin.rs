//! Admin routes of the system area.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::app::AppState;

/// `GET /admin/liveness` (admin): the last completed tick of each supervised loop,
/// `{"subsystems":{name:{"last_tick_at":RFC3339,"seconds_ago":n}}}`.
pub(crate) async fn liveness(State(state): State<AppState>) -> Json<Value> {
    let now = OffsetDateTime::now_utc();
    let subsystems: Map<String, Value> = state
        .supervisor
        .last_ticks()
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
