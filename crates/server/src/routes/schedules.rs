//! Cron schedules (spec: scheduler-channels-mcp §4): CRUD, manual runs, history and health.
//! Every route that names a schedule is scoped to the workspace in the path (another
//! workspace's schedule is 404). Invalid expressions and zones are refused before anything is
//! written.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use molecule_domain::WorkspaceId;
use molecule_store::{NewSchedule, Schedule, ScheduleUpdate, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::auth;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, ok_list, status_body};
use crate::extract::{JsonBody, Query, WorkspacePath, flag};
use crate::scheduler::cron::{self, CronError};
use crate::scheduler::health;
use crate::state::AppState;

/// History rows answered per request.
const HISTORY_LIMIT: i64 = 20;

#[derive(Deserialize)]
pub(crate) struct Create {
    name: Option<String>,
    cron_expr: Option<String>,
    timezone: Option<String>,
    prompt: Option<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct Update {
    name: Option<String>,
    cron_expr: Option<String>,
    timezone: Option<String>,
    prompt: Option<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct RunQuery {
    /// Fire on the server (and wait for the outcome) rather than hand the prompt back.
    #[serde(default, deserialize_with = "flag")]
    fire: bool,
}

fn ts(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn view(s: &Schedule) -> Value {
    let mut v = json!({
        "id": s.id, "workspace_id": s.workspace_id, "name": s.name, "cron_expr": s.cron_expr,
        "timezone": s.timezone, "prompt": s.prompt, "enabled": s.enabled,
        "last_run_at": ts(s.last_run_at), "next_run_at": ts(s.next_run_at),
        "run_count": s.run_count, "last_status": s.last_status, "last_error": s.last_error,
        "created_at": ts(Some(s.created_at)), "updated_at": ts(Some(s.updated_at)),
    });
    if !s.source.is_empty() {
        v["source"] = json!(s.source);
    }
    v
}

/// A schedule id from the path; a malformed one names no schedule.
fn schedule_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::not_found("schedule not found"))
}

/// The next run of `expr` in `tz` after now, or the API's refusal: an unknown zone names
/// itself, anything else is the generic `invalid request body` (#1193).
fn next_run(expr: &str, tz: &str, now: OffsetDateTime) -> ApiResult<OffsetDateTime> {
    cron::next_run(expr, tz, now).map_err(|e| match e {
        CronError::Timezone(name) => ApiError::bad_request(format!("invalid timezone: {name}")),
        CronError::Expression(_) | CronError::Never => {
            ApiError::bad_request("invalid request body")
        }
    })
}

fn duplicate_or(message: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::Duplicate => ApiError::conflict("a schedule with this name already exists"),
        StoreError::NotFound => ApiError::not_found("workspace not found"),
        e => ApiError::internal(message, &e),
    }
}

/// `GET /workspaces/:id/schedules`: the workspace's schedules, oldest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let rows = state
        .store
        .schedules()
        .list(id)
        .await
        .or_internal("failed to query schedules")?;
    Ok(ok_list(&rows, view))
}

/// `POST /workspaces/:id/schedules` `{name?, cron_expr, timezone?, prompt, enabled?}` → 201
/// `{id, status: "created", next_run_at}`.
pub(crate) async fn create(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(body): JsonBody<Create>,
) -> ApiResult<Response> {
    let cron_expr = body.cron_expr.unwrap_or_default();
    let prompt = body.prompt.unwrap_or_default().replace('\r', "");
    if cron_expr.trim().is_empty() || prompt.trim().is_empty() {
        return Err(ApiError::bad_request("cron_expr and prompt are required"));
    }
    let timezone = body
        .timezone
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "UTC".into());
    if cron::zone(&timezone).is_err() {
        return Err(ApiError::bad_request(format!(
            "invalid timezone: {timezone}"
        )));
    }
    let next = next_run(&cron_expr, &timezone, state.scheduler.now())?;
    super::live_workspace(&state, id, "failed to create schedule").await?;
    let new = NewSchedule {
        workspace_id: id,
        name: body.name.unwrap_or_default(),
        cron_expr,
        timezone,
        prompt,
        enabled: body.enabled.unwrap_or(true),
        next_run_at: Some(next),
        source: "runtime".into(),
    };
    let created = state
        .store
        .schedules()
        .create(&new)
        .await
        .map_err(duplicate_or("failed to create schedule"))?;
    Ok(ok_json(
        StatusCode::CREATED,
        json!({ "id": created.id, "status": "created", "next_run_at": ts(created.next_run_at) }),
    ))
}

/// `PATCH /workspaces/:id/schedules/:scheduleId`: absent or null fields keep their value. A
/// new expression or zone recomputes the next run, and so does enabling a schedule (it does
/// not fire at once for a run missed while disabled, defect 25); any edit resets the
/// empty-reply counter.
pub(crate) async fn update(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
    JsonBody(body): JsonBody<Update>,
) -> ApiResult<Response> {
    let sid = schedule_id(&raw)?;
    let schedules = state.store.schedules();
    let current = schedules
        .get(id, sid)
        .await
        .or_internal("failed to update schedule")?
        .ok_or_else(|| ApiError::not_found("schedule not found"))?;
    let timezone = body
        .timezone
        .map(|t| t.trim().to_owned())
        .map(|t| if t.is_empty() { "UTC".to_owned() } else { t });
    let prompt = body.prompt.map(|p| p.replace('\r', ""));
    if prompt.as_deref().is_some_and(|p| p.trim().is_empty())
        || body
            .cron_expr
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
    {
        return Err(ApiError::bad_request("cron_expr and prompt are required"));
    }
    let reschedule = body.cron_expr.is_some()
        || timezone.is_some()
        || (body.enabled == Some(true) && !current.enabled);
    let next_run_at = if reschedule {
        let tz = timezone.as_deref().unwrap_or(&current.timezone);
        if cron::zone(tz).is_err() {
            return Err(ApiError::bad_request(format!("invalid timezone: {tz}")));
        }
        let expr = body.cron_expr.as_deref().unwrap_or(&current.cron_expr);
        Some(next_run(expr, tz, state.scheduler.now())?)
    } else {
        None
    };
    let change = ScheduleUpdate {
        name: body.name,
        cron_expr: body.cron_expr,
        timezone,
        prompt,
        enabled: body.enabled,
        next_run_at,
        reset_empty_runs: true,
    };
    let updated = schedules
        .update(id, sid, &change)
        .await
        .map_err(duplicate_or("failed to update schedule"))?;
    if !updated {
        return Err(ApiError::not_found("schedule not found"));
    }
    Ok(ok_json(StatusCode::OK, status_body("updated")))
}

/// `DELETE /workspaces/:id/schedules/:scheduleId`.
pub(crate) async fn remove(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
) -> ApiResult<Response> {
    let sid = schedule_id(&raw)?;
    let deleted = state
        .store
        .schedules()
        .delete(id, sid)
        .await
        .or_internal("failed to delete schedule")?;
    if !deleted {
        return Err(ApiError::not_found("schedule not found"));
    }
    Ok(ok_json(StatusCode::OK, status_body("deleted")))
}

/// `POST /workspaces/:id/schedules/:scheduleId/run`: by default hands the prompt back for the
/// canvas to send (`{status: "fired", workspace_id, prompt}`, nothing changes). With
/// `?fire=true` the server fires it itself like a scheduled run (history row, run count) and
/// adds `run_status`/`run_error`; 409 while a run of it is in flight.
pub(crate) async fn run(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
    Query(q): Query<RunQuery>,
) -> ApiResult<Response> {
    let sid = schedule_id(&raw)?;
    let schedule = state
        .store
        .schedules()
        .get(id, sid)
        .await
        .or_internal("failed to read schedule")?
        .ok_or_else(|| ApiError::not_found("schedule not found"))?;
    let mut body = json!({ "status": "fired", "workspace_id": id, "prompt": schedule.prompt });
    if q.fire {
        let outcome = state
            .scheduler
            .run_now(id, sid)
            .await
            .or_internal("failed to run schedule")?
            .ok_or_else(|| ApiError::conflict("schedule is already running"))?;
        body["run_status"] = json!(outcome.status);
        body["run_error"] = json!(outcome.error);
    }
    Ok(ok_json(StatusCode::OK, body))
}

/// `GET /workspaces/:id/schedules/:scheduleId/history`: the latest 20 runs, newest first.
pub(crate) async fn history(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, raw)): Path<(String, String)>,
) -> ApiResult<Response> {
    let Ok(sid) = raw.parse::<Uuid>() else {
        return Ok(ok_json(StatusCode::OK, json!([])));
    };
    let runs = state
        .store
        .schedules()
        .history(id, sid, HISTORY_LIMIT)
        .await
        .or_internal("failed to query history")?;
    let rows: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "timestamp": ts(Some(r.timestamp)), "duration_ms": r.duration_ms,
                "status": r.status, "error_detail": r.error_detail, "request": r.request,
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(rows)))
}

/// `GET /workspaces/:id/schedules/health`: for the workspace itself or a peer named by
/// `X-Workspace-ID`, which must present its own token (self-calls too, defect 4; system
/// callers are never taken from a header). Never shows prompt, expression or zone.
pub(crate) async fn workspace_health(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller: WorkspaceId = headers
        .get("x-workspace-id")
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::unauthorized("X-Workspace-ID header required"))?
        .parse()
        .map_err(|_| ApiError::unauthorized("invalid caller auth token"))?;
    auth::agent_credential(&state, &headers, caller, false)
        .await
        .map_err(|e| match e.status() {
            StatusCode::UNAUTHORIZED if auth::bearer(&headers).is_none() => {
                ApiError::unauthorized("missing caller auth token")
            }
            StatusCode::UNAUTHORIZED => ApiError::unauthorized("invalid caller auth token"),
            _ => e,
        })?;
    if caller != id
        && !state
            .store
            .workspaces()
            .can_communicate(caller, id)
            .await
            .or_internal("failed to query schedules")?
    {
        return Err(ApiError::forbidden("access denied"));
    }
    let rows = state
        .store
        .schedules()
        .list(id)
        .await
        .or_internal("failed to query schedules")?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "name": s.name, "enabled": s.enabled,
                "last_run_at": ts(s.last_run_at), "next_run_at": ts(s.next_run_at),
                "run_count": s.run_count, "last_status": s.last_status,
                "last_error": s.last_error,
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(rows)))
}

/// `GET /admin/schedules/health`: enabled schedules of live workspaces with their staleness
/// (`scheduler::health`), by workspace name then schedule name.
pub(crate) async fn admin_health(State(state): State<AppState>) -> ApiResult<Response> {
    let rows = state
        .store
        .schedules()
        .all_with_workspace()
        .await
        .or_internal("failed to query schedules")?;
    let now = state.scheduler.now();
    let rows: Vec<Value> = rows
        .iter()
        .filter(|r| r.schedule.enabled)
        .map(|r| {
            let s = &r.schedule;
            let h = health::of(s, now);
            json!({
                "workspace_id": s.workspace_id, "workspace_name": r.workspace_name,
                "schedule_id": s.id, "schedule_name": s.name, "cron_expr": s.cron_expr,
                "last_run_at": ts(s.last_run_at), "expected_next_run": ts(s.next_run_at),
                "status": h.status, "stale_threshold_seconds": h.stale_threshold_seconds,
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(rows)))
}
