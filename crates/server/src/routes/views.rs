//! The JSON shapes of workspaces, exactly as the reference serves them.

use molecule_store::{Layout, Workspace};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 text of a time.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn non_empty(v: &Option<String>) -> Value {
    match v.as_deref() {
        Some(s) if !s.is_empty() => Value::String(s.to_owned()),
        _ => Value::Null,
    }
}

/// An item of `GET /workspaces`.
pub(crate) fn list_item(ws: &Workspace, layout: Option<Layout>) -> Value {
    let layout = layout.unwrap_or_default();
    json!({
        "id": ws.id,
        "name": ws.name,
        "role": non_empty(&ws.role),
        "tier": ws.tier,
        "status": ws.status,
        "url": ws.url.clone().unwrap_or_default(),
        "parent_id": ws.parent_id,
        "agent_card": ws.agent_card,
        "active_tasks": ws.active_tasks,
        "max_concurrent_tasks": ws.max_concurrent_tasks,
        "last_error_rate": ws.last_error_rate,
        "last_sample_error": ws.last_sample_error.clone().unwrap_or_default(),
        "uptime_seconds": ws.uptime_seconds,
        "current_task": ws.current_task.clone().unwrap_or_default(),
        "runtime": ws.runtime,
        "workspace_dir": non_empty(&ws.workspace_dir),
        "x": layout.x,
        "y": layout.y,
        "collapsed": layout.collapsed,
        "budget_limit": ws.budget_limit,
        "monthly_spend": ws.monthly_spend,
        "delivery_mode": ws.delivery_mode,
    })
}

/// The body of `GET /workspaces/:id`: the list item without the operator-only fields, with
/// `last_outbound_at`.
pub(crate) fn detail(ws: &Workspace, layout: Option<Layout>) -> Value {
    let mut item = list_item(ws, layout);
    if let Some(map) = item.as_object_mut() {
        for key in [
            "budget_limit",
            "monthly_spend",
            "current_task",
            "last_sample_error",
            "workspace_dir",
        ] {
            map.remove(key);
        }
        map.insert(
            "last_outbound_at".to_owned(),
            ws.last_outbound_at
                .map_or(Value::Null, |t| Value::String(rfc3339(t))),
        );
    }
    item
}

/// The body of a budget answer.
pub(crate) fn budget(ws: &Workspace) -> Value {
    json!({
        "budget_limit": ws.budget_limit,
        "monthly_spend": ws.monthly_spend,
        "budget_remaining": ws.budget_limit.map(|l| l - ws.monthly_spend),
    })
}
