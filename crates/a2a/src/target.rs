//! The target workspace as the proxy sees it: its name in summaries, whether it is live and
//! full, and the common fields of the `a2a_receive` rows written on it.

use molecule_domain::WorkspaceStatus;
use molecule_store::{NewActivity, Workspace};

use crate::caller::Caller;
use crate::normalize::Normalized;

/// The name used in summaries: the workspace name, else its id.
pub(crate) fn display_name(ws: &Workspace) -> String {
    if ws.name.is_empty() {
        ws.id.to_string()
    } else {
        ws.name.clone()
    }
}

/// `method → name`: the summary of a message to `ws`.
pub(crate) fn summary(normalized: &Normalized, ws: &Workspace) -> String {
    format!("{} → {}", normalized.method, display_name(ws))
}

/// Whether the target is up (online or degraded).
pub(crate) fn is_live(ws: &Workspace) -> bool {
    matches!(
        ws.status,
        WorkspaceStatus::Online | WorkspaceStatus::Degraded
    )
}

/// Whether the target reported no free task slot.
pub(crate) fn is_full(ws: &Workspace) -> bool {
    ws.active_tasks >= ws.max_concurrent_tasks.max(1)
}

/// An `a2a_receive` row on the target with `summary` and the request body; the rest as for a
/// plain success.
pub(crate) fn receive_row(
    ws: &Workspace,
    caller: &Caller,
    normalized: &Normalized,
    summary: String,
) -> NewActivity {
    NewActivity {
        workspace_id: ws.id,
        activity_type: "a2a_receive".into(),
        source_id: caller.workspace(),
        caller: caller.system().map(str::to_owned),
        target_id: Some(ws.id),
        method: Some(normalized.method.clone()).filter(|m| !m.is_empty()),
        summary: Some(summary),
        request_body: Some(normalized.body.clone()),
        response_body: None,
        tool_trace: None,
        duration_ms: None,
        status: "ok".into(),
        error_detail: None,
        idempotency_key: None,
    }
}
