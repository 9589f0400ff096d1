//! The bookkeeping of one delegation: the `delegation` activity rows of its source and the
//! events that follow them, from dispatch to the end (also when a queue drain completes it).

use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{DelegationChange, NewActivity};
use serde_json::{Value, json};

use crate::log::preview;
use crate::shared::Shared;

/// The method of a delegation's request row.
pub(crate) const REQUEST: &str = "delegate";
/// The method of a delegation's result rows.
pub(crate) const RESULT: &str = "delegate_result";

/// A `delegation` activity row of `source` with its method and status; the rest empty.
pub(crate) fn delegation_row(
    source: WorkspaceId,
    target: Option<WorkspaceId>,
    method: &str,
    status: &str,
) -> NewActivity {
    NewActivity {
        source_id: Some(source),
        target_id: target,
        method: Some(method.into()),
        status: status.into(),
        ..NewActivity::new(source, "delegation")
    }
}

/// One delegation (`id`, from `source` to `target`) whose rows and events are kept.
#[derive(Clone, Copy)]
pub(crate) struct Tracked<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) source: WorkspaceId,
    pub(crate) target: WorkspaceId,
    pub(crate) id: &'a str,
}

impl Tracked<'_> {
    /// The message is on its way: the request row and a `DELEGATION_STATUS` event say so.
    pub(crate) async fn dispatched(self) {
        self.set_request_status("dispatched", None).await;
        self.status_event("dispatched").await;
    }

    /// The target was busy and the message waits in its queue.
    pub(crate) async fn queued(self) {
        self.set_request_status("queued", None).await;
        self.result_row(
            "queued",
            "Delegation queued — target at capacity".into(),
            Some(json!({ "delegation_id": self.id, "queued": true })),
            None,
        )
        .await;
        self.status_event("queued").await;
    }

    /// The target answered (`answer`); `via` names who saw it through, when not the proxy.
    pub(crate) async fn completed(self, answer: Option<&Value>, via: Option<&str>) {
        let (source, id) = (self.source, self.id);
        let text = answer.map(reply_text).unwrap_or_default();
        let summary = format!("Delegation completed ({})", preview(&text, 80));
        let response = json!({ "text": text, "delegation_id": id });
        let change = DelegationChange {
            status: "completed".into(),
            summary: Some(summary.clone()),
            response_body: Some(response.clone()),
            error_detail: None,
        };
        let updated = self
            .shared
            .store
            .activity()
            .update_delegation(source, id, RESULT, &change)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "delegation: cannot update result rows");
                0
            });
        if updated == 0 {
            self.result_row("completed", summary, Some(response), None)
                .await;
        }
        self.set_request_status("completed", None).await;
        let mut payload = json!({
            "delegation_id": id,
            "target_id": self.target,
            "response_preview": preview(&text, 200),
        });
        if let Some(via) = via {
            payload["via"] = json!(via);
        }
        self.emit(EventType::DelegationComplete, payload).await;
    }

    /// The delegation failed with `error`.
    pub(crate) async fn failed(self, error: String) {
        self.set_request_status("failed", Some(&error)).await;
        self.result_row(
            "failed",
            "Delegation failed".into(),
            Some(json!({ "delegation_id": self.id })),
            Some(error.clone()),
        )
        .await;
        let payload = json!({ "delegation_id": self.id, "target_id": self.target, "error": error });
        self.emit(EventType::DelegationFailed, payload).await;
    }

    async fn set_request_status(self, status: &str, error: Option<&str>) {
        let change = DelegationChange {
            status: status.into(),
            summary: None,
            response_body: None,
            error_detail: error.map(str::to_owned),
        };
        if let Err(e) = self
            .shared
            .store
            .activity()
            .update_delegation(self.source, self.id, REQUEST, &change)
            .await
        {
            tracing::warn!(error = %e, "delegation: cannot update the request row");
        }
    }

    async fn result_row(
        self,
        status: &str,
        summary: String,
        response: Option<Value>,
        error: Option<String>,
    ) {
        let row = NewActivity {
            summary: Some(summary),
            response_body: response,
            error_detail: error,
            ..delegation_row(self.source, Some(self.target), RESULT, status)
        };
        self.shared.record_quietly(row).await;
    }

    async fn status_event(self, status: &str) {
        let payload =
            json!({ "delegation_id": self.id, "target_id": self.target, "status": status });
        self.emit(EventType::DelegationStatus, payload).await;
    }

    async fn emit(self, event: EventType, payload: Value) {
        self.shared.platform.emit(event, self.source, payload).await;
    }
}

/// The text of an agent's answer: the first text part of `result.parts`, else of
/// `result.artifacts[*].parts`, else the whole answer as JSON text.
fn reply_text(answer: &Value) -> String {
    fn first_text(parts: Option<&Value>) -> Option<String> {
        parts?
            .as_array()?
            .iter()
            .find(|p| p.get("kind").or_else(|| p.get("type")) == Some(&json!("text")))
            .and_then(|p| p.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
    let result = answer.get("result");
    first_text(result.and_then(|r| r.get("parts")))
        .or_else(|| {
            result
                .and_then(|r| r.get("artifacts"))
                .and_then(Value::as_array)
                .and_then(|arts| arts.iter().find_map(|a| first_text(a.get("parts"))))
        })
        .unwrap_or_else(|| answer.to_string())
}
