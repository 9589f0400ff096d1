//! Activity routes (observability.md §1.5): the activity list with its `since_id` cursor, the
//! agents' self-reports, notifications to the user, and the session search.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{ActivityQuery, ActivityRow, NewActivity, SourceFilter, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::body;
use super::views::rfc3339;
use crate::activity_log::log_activity;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, status_body};
use crate::extract::{JsonBody, Query, WorkspacePath, non_empty};
use crate::state::AppState;

/// Rows of one activity page when `limit` is absent or not a positive integer.
const DEFAULT_LIMIT: i64 = 100;
/// The most rows of one activity page.
const MAX_LIMIT: i64 = 500;
/// The longest `since_secs` window: 30 days.
const MAX_SINCE_SECS: i64 = 2_592_000;
/// Session-search items when `limit` is absent or invalid.
const SEARCH_DEFAULT_LIMIT: i64 = 50;
/// The most session-search items.
const SEARCH_MAX_LIMIT: i64 = 200;
/// Bytes of a notification kept in its activity summary.
const NOTIFY_PREVIEW_BYTES: usize = 80;

/// The activity types an agent may report.
const REPORTABLE_TYPES: [&str; 7] = [
    "a2a_send",
    "a2a_receive",
    "task_update",
    "agent_log",
    "skill_promotion",
    "memory_write",
    "error",
];

const CURSOR_GONE: &str = "since_id cursor not found (row may have been pruned or belongs to a \
     different workspace); omit since_id to reset";

/// `limit`: `default` when absent, not an integer or not positive; at most `max`.
fn clamp_limit(raw: Option<&str>, default: i64, max: i64) -> i64 {
    match raw.and_then(|l| l.parse::<i64>().ok()) {
        Some(l) if l > 0 => l.min(max),
        _ => default,
    }
}

/// `GET /workspaces/:id/activity` query; an empty parameter is an absent one.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default, deserialize_with = "non_empty")]
    peer_id: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    before_ts: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    limit: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    since_secs: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    since_id: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "non_empty")]
    activity_type: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    source: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    method: Option<String>,
}

/// `GET /workspaces/:id/activity` (workspace auth).
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    // Validated in the reference's order: the first failure answers.
    let peer = match query.peer_id.as_deref() {
        Some(p) => Some(
            p.parse::<WorkspaceId>()
                .map_err(|_| ApiError::bad_request("peer_id must be a UUID"))?,
        ),
        None => None,
    };
    let before = match query.before_ts.as_deref() {
        Some(b) => Some(parse_rfc3339(b).ok_or_else(|| {
            ApiError::bad_request(
                "before_ts must be an RFC3339 timestamp (e.g. 2026-05-01T00:00:00Z)",
            )
        })?),
        None => None,
    };
    let limit = clamp_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT);
    let since = match query.since_secs.as_deref() {
        Some(s) => {
            let secs =
                s.parse::<i64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    ApiError::bad_request("since_secs must be a positive integer")
                })?;
            Some(OffsetDateTime::now_utc() - time::Duration::seconds(secs.min(MAX_SINCE_SECS)))
        }
        None => None,
    };
    let after = match query.since_id.as_deref() {
        // A cursor that is not even a UUID names no row: the same 410 as a pruned one.
        Some(c) => {
            let cursor = c.parse::<Uuid>().map_err(|_| cursor_gone())?;
            let found = state
                .store
                .activity()
                .get(id, cursor)
                .await
                .or_internal("cursor lookup failed")?;
            if found.is_none() {
                return Err(cursor_gone());
            }
            Some(cursor)
        }
        None => None,
    };
    let activity_type = query.activity_type.as_deref().map(str::to_owned);
    let source = match query.source.as_deref() {
        None => None,
        Some("canvas") => Some(SourceFilter::Canvas),
        Some("agent") => Some(SourceFilter::Agent),
        Some(_) => return Err(ApiError::bad_request("source must be 'canvas' or 'agent'")),
    };
    let method = query.method.as_deref().map(str::to_owned);
    let q = ActivityQuery {
        activity_type,
        source,
        peer,
        before,
        since,
        after,
        method,
        limit,
    };
    let rows = match state.store.activity().list(id, &q).await {
        Ok(rows) => rows,
        // Pruned between the check and the query.
        Err(StoreError::CursorNotFound) => return Err(cursor_gone()),
        Err(e) => return Err(ApiError::internal("query failed", &e)),
    };
    let items: Vec<Value> = rows.iter().map(activity_item).collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

/// An RFC 3339 timestamp as Go's `time.RFC3339` reads it: fractional seconds and numeric
/// offsets accepted, the `T` and `Z` in upper case only (no space, no lower case).
fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    if s.bytes().any(|c| matches!(c, b' ' | b't' | b'z')) {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn cursor_gone() -> ApiError {
    ApiError::new(StatusCode::GONE, CURSOR_GONE)
}

/// A JSON string, or `null` when empty.
fn nullable(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

/// Puts the bodies that are not null into `item`.
fn put_bodies(item: &mut Map<String, Value>, bodies: &[(&str, &Option<Value>)]) {
    for (key, value) in bodies {
        if let Some(v) = value.as_ref().filter(|v| !v.is_null()) {
            item.insert((*key).to_owned(), v.clone());
        }
    }
}

/// One item of the activity list.
fn activity_item(row: &ActivityRow) -> Value {
    let mut item = Map::new();
    item.insert("id".into(), json!(row.id));
    item.insert("workspace_id".into(), json!(row.workspace_id));
    item.insert("activity_type".into(), json!(row.activity_type));
    item.insert("source_id".into(), json!(row.source_id));
    item.insert("target_id".into(), json!(row.target_id));
    item.insert("method".into(), json!(row.method));
    item.insert("summary".into(), json!(row.summary));
    item.insert("duration_ms".into(), json!(row.duration_ms));
    item.insert("status".into(), nullable(&row.status));
    item.insert("error_detail".into(), json!(row.error_detail));
    item.insert("created_at".into(), json!(rfc3339(row.created_at)));
    // Ours: a system caller (`webhook:…`) that has no workspace id.
    if let Some(caller) = &row.caller {
        item.insert("caller".into(), json!(caller));
    }
    put_bodies(
        &mut item,
        &[
            ("request_body", &row.request_body),
            ("response_body", &row.response_body),
            ("tool_trace", &row.tool_trace),
        ],
    );
    Value::Object(item)
}

/// The body of an agent's self-report.
#[derive(Debug, Deserialize)]
pub(crate) struct Report {
    activity_type: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    target_id: Option<String>,
    #[serde(default)]
    source_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_detail: Option<String>,
    #[serde(default)]
    duration_ms: Option<i64>,
    #[serde(default)]
    request_body: Option<Value>,
    #[serde(default)]
    response_body: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// An optional string, `None` when empty.
fn filled(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// `POST /workspaces/:id/activity` (workspace auth): an agent reports its own activity.
pub(crate) async fn report(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(report): JsonBody<Report>,
) -> ApiResult<Response> {
    if report.activity_type.is_empty() {
        return Err(ApiError::bad_request(crate::extract::INVALID_BODY));
    }
    if !REPORTABLE_TYPES.contains(&report.activity_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid activity_type, must be one of: {}",
            REPORTABLE_TYPES.join(", ")
        )));
    }
    if let Some(claimed) = filled(report.source_id) {
        let same = claimed
            .parse::<WorkspaceId>()
            .is_ok_and(|claimed| claimed == id);
        if !same {
            // Debug formatting escapes control characters: the log line stays one line.
            tracing::warn!(workspace = %id, attempted = ?claimed, "activity report with another source_id");
            return Err(ApiError::forbidden(
                "source_id must match authenticated workspace",
            ));
        }
    }
    let target_id = match filled(report.target_id) {
        Some(t) => Some(
            t.parse::<WorkspaceId>()
                .map_err(|_| ApiError::bad_request("target_id must be a UUID"))?,
        ),
        None => None,
    };
    let mut new = NewActivity::new(id, report.activity_type);
    new.source_id = Some(id);
    new.target_id = target_id;
    new.method = filled(report.method);
    new.summary = filled(report.summary);
    new.request_body = report
        .request_body
        .filter(|v| !v.is_null())
        .or(report.metadata)
        .filter(|v| !v.is_null());
    new.response_body = report.response_body.filter(|v| !v.is_null());
    new.duration_ms = report.duration_ms;
    new.status = filled(report.status).unwrap_or_else(|| String::from("ok"));
    new.error_detail = filled(report.error_detail);
    match log_activity(&state, new).await {
        Ok(_) => Ok(ok_json(StatusCode::OK, status_body("logged"))),
        Err(StoreError::NotFound) => Err(ApiError::not_found("workspace not found")),
        Err(e) => Err(ApiError::internal("failed to log activity", &e)),
    }
}

/// A file attached to a notification.
#[derive(Debug, Deserialize)]
struct Attachment {
    #[serde(default)]
    uri: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "mimeType")]
    mime_type: Option<String>,
    #[serde(default)]
    size: Option<i64>,
}

impl Attachment {
    /// `{uri, name, mimeType?, size?}`: the MIME type only when not empty, the size only when
    /// positive.
    fn to_json(&self) -> Value {
        let mut file = Map::new();
        file.insert("uri".into(), json!(self.uri));
        file.insert("name".into(), json!(self.name));
        if let Some(m) = self.mime_type.as_deref().filter(|m| !m.is_empty()) {
            file.insert("mimeType".into(), json!(m));
        }
        if let Some(s) = self.size.filter(|s| *s > 0) {
            file.insert("size".into(), json!(s));
        }
        Value::Object(file)
    }
}

#[derive(Debug, Deserialize)]
struct Notification {
    message: String,
    #[serde(default)]
    attachments: Option<Vec<Attachment>>,
}

/// At most `max` bytes of `s`, cut on a character boundary, with `…` when cut.
fn preview(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `POST /workspaces/:id/notify` (workspace auth): an agent pushes a chat message to the user.
pub(crate) async fn notify(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    raw: Bytes,
) -> ApiResult<Response> {
    const REQUIRED: &str = "message is required";
    let note: Notification = body::json(&raw, REQUIRED)?;
    if note.message.is_empty() {
        return Err(ApiError::bad_request(REQUIRED));
    }
    let attachments = note.attachments.unwrap_or_default();
    if let Some(i) = attachments
        .iter()
        .position(|a| a.uri.is_empty() || a.name.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "attachment[{i}]: uri and name are required"
        )));
    }
    let ws = crate::routes::live_workspace(&state, id, "failed to look up workspace").await?;
    let files: Vec<Value> = attachments.iter().map(Attachment::to_json).collect();
    let mut payload = Map::new();
    payload.insert("message".into(), json!(note.message));
    payload.insert("workspace_id".into(), json!(id));
    payload.insert("name".into(), json!(ws.name));
    if !files.is_empty() {
        payload.insert("attachments".into(), Value::Array(files.clone()));
    }
    state
        .events
        .emit(EventType::AgentMessage, Some(id), Value::Object(payload))
        .await;
    // Persisted so the message survives a reload of the chat (best effort, not broadcast as
    // ACTIVITY_LOGGED).
    let mut response = Map::new();
    response.insert("result".into(), json!(note.message));
    if !files.is_empty() {
        let parts: Vec<Value> = files
            .into_iter()
            .map(|file| json!({"kind": "file", "file": file}))
            .collect();
        response.insert("parts".into(), Value::Array(parts));
    }
    let mut row = NewActivity::new(id, "a2a_receive");
    row.method = Some("notify".into());
    row.summary = Some(format!(
        "Agent message: {}",
        preview(&note.message, NOTIFY_PREVIEW_BYTES)
    ));
    row.response_body = Some(Value::Object(response));
    if let Err(e) = state.store.activity().record(&row).await {
        tracing::error!(workspace = %id, error = %e, "cannot persist a notification");
    }
    Ok(ok_json(StatusCode::OK, status_body("sent")))
}

/// `GET /workspaces/:id/session-search` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default, deserialize_with = "non_empty")]
    q: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    limit: Option<String>,
}

/// `GET /workspaces/:id/session-search?q=&limit=` (workspace auth): this workspace's activity
/// rows (`kind: "activity"`) and its own memories (`kind: "memory"`), newest first.
pub(crate) async fn session_search(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Response> {
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let limit = clamp_limit(
        query.limit.as_deref(),
        SEARCH_DEFAULT_LIMIT,
        SEARCH_MAX_LIMIT,
    );
    let rows = state
        .store
        .activity()
        .search(id, q, limit)
        .await
        .or_internal("session search failed")?;
    let mut items: Vec<(OffsetDateTime, Value)> = rows
        .iter()
        .map(|row| {
            let mut item = Map::new();
            item.insert("kind".into(), json!("activity"));
            item.insert("id".into(), json!(row.id));
            item.insert("workspace_id".into(), json!(row.workspace_id));
            item.insert("label".into(), json!(row.activity_type));
            item.insert(
                "content".into(),
                json!(row.summary.clone().unwrap_or_default()),
            );
            item.insert(
                "method".into(),
                json!(row.method.clone().unwrap_or_default()),
            );
            item.insert("status".into(), json!(row.status));
            item.insert("created_at".into(), json!(rfc3339(row.created_at)));
            put_bodies(
                &mut item,
                &[
                    ("request_body", &row.request_body),
                    ("response_body", &row.response_body),
                ],
            );
            (row.created_at, Value::Object(item))
        })
        .collect();
    // The union with this workspace's memories, newest first, `limit` in all.
    items.extend(super::memories::session_items(&state, id, q, limit).await?);
    items.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let items = items
        .into_iter()
        .take(limit)
        .map(|(_, item)| item)
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_cut_on_a_character_boundary() {
        assert_eq!(preview("short", 80), "short");
        let exact = "a".repeat(80);
        assert_eq!(preview(&exact, 80), exact);
        let long = format!("{}é", "a".repeat(79));
        // 'é' is two bytes: it would straddle byte 80, so it is left out.
        assert_eq!(preview(&long, 80), format!("{}…", "a".repeat(79)));
        assert_eq!(preview("ééé", 3), "é…");
    }

    #[test]
    fn timestamps_are_strict_rfc3339() {
        for ok in [
            "2026-05-01T00:00:00Z",
            "2026-05-01T12:00:00.123456789Z",
            "2026-05-01T12:00:00+02:00",
            "2026-05-01T12:00:00.5-07:30",
        ] {
            assert!(parse_rfc3339(ok).is_some(), "{ok}");
        }
        for bad in [
            "2026-05-01",
            "2026-05-01 00:00:00Z",
            "2026-05-01t00:00:00Z",
            "2026-05-01T00:00:00z",
            "2026-05-01T00:00Z",
            "yesterday",
            "2026-05-01T00:00:00Z' OR 1=1--",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_rfc3339("2026-05-01T12:00:00+02:00"),
            parse_rfc3339("2026-05-01T10:00:00Z")
        );
    }

    #[test]
    fn limits_are_clamped_and_defaulted() {
        assert_eq!(clamp_limit(None, 100, 500), 100);
        assert_eq!(clamp_limit(Some("abc"), 100, 500), 100);
        assert_eq!(clamp_limit(Some("0"), 100, 500), 100);
        assert_eq!(clamp_limit(Some("-3"), 100, 500), 100);
        assert_eq!(clamp_limit(Some("+7"), 100, 500), 7);
        assert_eq!(clamp_limit(Some("9999"), 100, 500), 500);
        assert_eq!(clamp_limit(Some("60.5"), 50, 200), 50);
    }
}
