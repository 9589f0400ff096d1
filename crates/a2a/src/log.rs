//! Activity rows and their `ACTIVITY_LOGGED` broadcast (observability.md §1.5).

use molecule_domain::EventType;
use molecule_store::{ActivityRow, NewActivity, Store, StoreError};
use serde_json::{Map, Value, json};

use crate::platform::Platform;

/// Inserts an activity row and, once stored, broadcasts `ACTIVITY_LOGGED` on its workspace
/// (the bodies and tool trace only when present). An empty tool trace (`[]`, `{}`) is not
/// stored. When the write fails nothing is broadcast.
pub async fn record(
    store: &Store,
    platform: &dyn Platform,
    new: &NewActivity,
) -> Result<ActivityRow, StoreError> {
    let row = store.activity().record(&without_empty_trace(new)).await?;
    platform
        .emit(
            EventType::ActivityLogged,
            row.workspace_id,
            logged_payload(&row),
        )
        .await;
    Ok(row)
}

/// Like [`record`], for callers that can only log a failure.
pub async fn record_quietly(store: &Store, platform: &dyn Platform, new: &NewActivity) {
    if let Err(e) = record(store, platform, new).await {
        tracing::warn!(workspace = %new.workspace_id, error = %e, "cannot write an activity row");
    }
}

/// The row to store: an empty tool trace is no tool trace.
pub fn without_empty_trace(new: &NewActivity) -> NewActivity {
    strip_empty_trace(new.clone())
}

/// [`without_empty_trace`] of a row the caller gives away (no copy).
pub fn strip_empty_trace(mut new: NewActivity) -> NewActivity {
    let empty = |v: &Value| match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        other => other.is_null(),
    };
    if new.tool_trace.as_ref().is_some_and(empty) {
        new.tool_trace = None;
    }
    new
}

/// The `ACTIVITY_LOGGED` payload of a row (observability.md §1.1): the summary fields,
/// nullable, plus the bodies and the tool trace only when non-null (a present-but-null body
/// would render an empty chat bubble).
pub fn logged_payload(row: &ActivityRow) -> Value {
    let mut payload = Map::new();
    payload.insert("activity_type".into(), json!(row.activity_type));
    payload.insert("method".into(), json!(row.method));
    payload.insert("summary".into(), json!(row.summary));
    payload.insert(
        "status".into(),
        json!(Some(row.status.as_str()).filter(|s| !s.is_empty())),
    );
    payload.insert("source_id".into(), json!(row.source_id));
    payload.insert("target_id".into(), json!(row.target_id));
    payload.insert("duration_ms".into(), json!(row.duration_ms));
    for (key, value) in [
        ("tool_trace", &row.tool_trace),
        ("request_body", &row.request_body),
        ("response_body", &row.response_body),
    ] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_null()) {
            payload.insert(key.into(), v.clone());
        }
    }
    Value::Object(payload)
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn preview(text: &str, max: usize) -> String {
    shorten(text, max, "…")
}

/// `text` cut to at most `max` bytes on a character boundary, with `ellipsis` when cut.
pub(crate) fn shorten(text: &str, max: usize, ellipsis: &str) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}
