//! The shared activity logger (observability.md §1.5): writes one `activity_logs` row and,
//! once it is stored, broadcasts `ACTIVITY_LOGGED` about its workspace. Used by the agents'
//! self-reports and the A2A proxy.

use molecule_a2a::log::logged_payload;
use molecule_domain::EventType;
use molecule_store::{ActivityRow, NewActivity, StoreError};

use crate::state::AppState;

/// Writes the row and broadcasts `ACTIVITY_LOGGED` (broadcast only), as the A2A proxy does
/// ([`molecule_a2a::log`]). When the write fails nothing is broadcast and the error is returned
/// for the caller to log or answer.
pub(crate) async fn log_activity(
    state: &AppState,
    new: NewActivity,
) -> Result<ActivityRow, StoreError> {
    let new = molecule_a2a::log::without_empty_trace(&new);
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

#[cfg(test)]
mod tests {
    use super::*;
    use molecule_domain::WorkspaceId;
    use serde_json::{Value, json};

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
