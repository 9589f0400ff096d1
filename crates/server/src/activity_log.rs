//! The shared activity logger (observability.md §1.5): writes one `activity_logs` row and,
//! once it is stored, broadcasts `ACTIVITY_LOGGED` about its workspace. Used by the agents'
//! self-reports and the A2A proxy.

use molecule_domain::EventType;
use molecule_store::{ActivityRow, NewActivity, StoreError};
use serde_json::{Map, Value, json};

use crate::app::AppState;

/// Writes the row and broadcasts `ACTIVITY_LOGGED` (broadcast only). An empty tool trace
/// (`[]`, `{}`) is not stored. When the write fails nothing is broadcast and the error is
/// returned for the caller to log or answer.
pub(crate) async fn log_activity(
    state: &AppState,
    mut new: NewActivity,
) -> Result<ActivityRow, StoreError> {
    let empty = |v: &Value| match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        other => other.is_null(),
    };
    if new.tool_trace.as_ref().is_some_and(empty) {
        new.tool_trace = None;
    }
    let row = state.store.activity().record(&new).await?;
    state
        .events
        .emit(
            EventType::ActivityLogged,
            Some(row.workspace_id),
            logged_payload(&row),
        )
        .await;
    Ok(row)
}

/// The payload of `ACTIVITY_LOGGED` (§1.1): the row's summary fields, nullable, plus the
/// bodies and the tool trace only when they are non-null (a present-but-null body would render
/// an empty chat bubble).
pub(crate) fn logged_payload(row: &ActivityRow) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use molecule_domain::WorkspaceId;

    fn row() -> ActivityRow {
        ActivityRow {
            id: uuid::Uuid::new_v4(),
            workspace_id: WorkspaceId::new(),
            activity_type: "a2a_receive".into(),
            source_id: None,
            caller: None,
            target_id: None,
            method: Some("message/send".into()),
            summary: None,
            request_body: None,
            response_body: None,
            tool_trace: None,
            duration_ms: None,
            status: "ok".into(),
            error_detail: None,
            idempotency_key: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn bodies_only_when_present_other_fields_always() {
        let bare = logged_payload(&row());
        let keys: Vec<&str> = bare
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "activity_type",
            "method",
            "summary",
            "status",
            "source_id",
            "target_id",
            "duration_ms",
        ] {
            assert!(keys.contains(&key), "{key} missing");
        }
        for key in ["tool_trace", "request_body", "response_body"] {
            assert!(!keys.contains(&key), "{key} present though null");
        }
        assert_eq!(bare["summary"], Value::Null);
        let mut full = row();
        full.request_body = Some(json!({"a": 1}));
        full.response_body = Some(json!("text"));
        full.tool_trace = Some(json!([]));
        let p = logged_payload(&full);
        assert_eq!(p["request_body"], json!({"a": 1}));
        assert_eq!(p["response_body"], json!("text"));
        assert_eq!(p["tool_trace"], json!([]));
    }
}
