//! Cron schedules (`workspace_schedules`) and their run history (`cron_run` rows of
//! `activity_logs`).
//!
//! The store knows no cron syntax: whoever calls it computes run times. Firing is a claim, a
//! run, then a finish. [`Schedules::claim_due`] hands each due run to one caller only
//! (PostgreSQL `FOR UPDATE SKIP LOCKED`, SQLite `BEGIN IMMEDIATE`), advances `next_run_at` in
//! the same transaction and leaves a lease with a fencing token on the row; [`Schedules::finish`]
//! records the outcome and the history row in one transaction, only while the token is still
//! the row's. A lease that expires (its replica died) is claimed again: a run whose message was
//! never sent is fired then; one that was sent is recorded as interrupted, never sent twice.

use molecule_domain::WorkspaceId;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// The `activity_type` of history rows.
pub const CRON_RUN_TYPE: &str = "cron_run";

/// One stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Its id.
    pub id: Uuid,
    /// The workspace it messages.
    pub workspace_id: WorkspaceId,
    /// Unique per workspace.
    pub name: String,
    /// The cron expression.
    pub cron_expr: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The message sent on each run.
    pub prompt: String,
    /// Whether it fires.
    pub enabled: bool,
    /// When it last ran (fired or was skipped).
    pub last_run_at: Option<OffsetDateTime>,
    /// When it runs next.
    pub next_run_at: Option<OffsetDateTime>,
    /// Runs so far.
    pub run_count: i32,
    /// `''`, `ok`, `error`, `stale` or `skipped`.
    pub last_status: String,
    /// The last run's error.
    pub last_error: String,
    /// `runtime` (the API) or `template` (org import).
    pub source: String,
    /// Consecutive empty ok replies.
    pub consecutive_empty_runs: i32,
    /// Created at.
    pub created_at: OffsetDateTime,
    /// Last changed at.
    pub updated_at: OffsetDateTime,
}

/// A schedule to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The name (unique per workspace).
    pub name: String,
    /// The cron expression.
    pub cron_expr: String,
    /// The time zone.
    pub timezone: String,
    /// The prompt.
    pub prompt: String,
    /// Whether it fires.
    pub enabled: bool,
    /// The first run.
    pub next_run_at: Option<OffsetDateTime>,
    /// `runtime` or `template`.
    pub source: String,
}

/// A change to a schedule: `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleUpdate {
    /// New name.
    pub name: Option<String>,
    /// New expression.
    pub cron_expr: Option<String>,
    /// New time zone.
    pub timezone: Option<String>,
    /// New prompt.
    pub prompt: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New next run.
    pub next_run_at: Option<OffsetDateTime>,
    /// Reset the empty-reply counter (the schedule was edited).
    pub reset_empty_runs: bool,
}

/// One history row.
#[derive(Debug, Clone, PartialEq)]
pub struct CronRun {
    /// When it was recorded.
    pub timestamp: OffsetDateTime,
    /// Always `None` (the reference records none).
    pub duration_ms: Option<i32>,
    /// The run's status.
    pub status: String,
    /// The run's error, `""` when none.
    pub error_detail: String,
    /// The schedule metadata recorded with the run.
    pub request: Value,
}

/// A schedule row with its workspace's name, for the admin health view.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleWithWorkspace {
    /// The schedule.
    pub schedule: Schedule,
    /// Its workspace's name.
    pub workspace_name: String,
}

pub(crate) const COLUMNS: &str = "id, workspace_id, name, cron_expr, timezone, prompt, enabled, last_run_at, \
     next_run_at, run_count, last_status, last_error, source, consecutive_empty_runs, \
     created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: DbUuid,
    workspace_id: DbUuid,
    name: String,
    cron_expr: String,
    timezone: String,
    prompt: String,
    enabled: bool,
    last_run_at: Option<DbTime>,
    next_run_at: Option<DbTime>,
    run_count: i32,
    last_status: Option<String>,
    last_error: Option<String>,
    source: String,
    consecutive_empty_runs: i32,
    created_at: DbTime,
    updated_at: DbTime,
}

impl From<Row> for Schedule {
    fn from(r: Row) -> Self {
        Schedule {
            id: r.id.0,
            workspace_id: r.workspace_id.into(),
            name: r.name,
            cron_expr: r.cron_expr,
            timezone: r.timezone,
            prompt: r.prompt,
            enabled: r.enabled,
            last_run_at: r.last_run_at.map(|t| t.0),
            next_run_at: r.next_run_at.map(|t| t.0),
            run_count: r.run_count,
            last_status: r.last_status.unwrap_or_default(),
            last_error: r.last_error.unwrap_or_default(),
            source: r.source,
            consecutive_empty_runs: r.consecutive_empty_runs,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        }
    }
}

/// The schedules repository.
#[derive(Debug, Clone, Copy)]
pub struct Schedules<'a> {
    pub(crate) db: &'a Pool,
    hot: &'a crate::Hot,
}

impl<'a> Schedules<'a> {
    pub(crate) fn new(db: &'a Pool, hot: &'a crate::Hot) -> Self {
        Self { db, hot }
    }

    /// The workspace's schedules, oldest first.
    pub async fn list(&self, ws: WorkspaceId) -> Result<Vec<Schedule>, StoreError> {
        let sql = Sql::built(
            format!(
                "SELECT {COLUMNS} FROM workspace_schedules WHERE workspace_id = $1 \
                 ORDER BY created_at ASC, id ASC"
            ),
            format!(
                "SELECT {COLUMNS} FROM workspace_schedules WHERE workspace_id = $1 \
                 ORDER BY created_at ASC, id ASC"
            ),
        );
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws); fetch_all)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One schedule of the workspace (another workspace's is `None`).
    pub async fn get(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<Schedule>, StoreError> {
        let sql = same(format!(
            "SELECT {COLUMNS} FROM workspace_schedules WHERE id = $1 AND workspace_id = $2"
        ));
        let row: Option<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid(id), DbUuid::from(ws); fetch_optional
        )?;
        Ok(row.map(Into::into))
    }

    /// Creates a schedule. A name the workspace already uses is [`StoreError::Duplicate`], a
    /// missing workspace [`StoreError::NotFound`].
    pub async fn create(&self, new: &NewSchedule) -> Result<Schedule, StoreError> {
        let id = Uuid::new_v4();
        let now = DbTime::now();
        let sql = Sql::same(
            "INSERT INTO workspace_schedules (id, workspace_id, name, cron_expr, timezone, \
             prompt, enabled, next_run_at, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(id),
            DbUuid::from(new.workspace_id),
            new.name.clone(),
            new.cron_expr.clone(),
            new.timezone.clone(),
            new.prompt.clone(),
            new.enabled,
            new.next_run_at.map(DbTime::at),
            new.source.clone(),
            now;
            execute
        )
        .map_err(StoreError::from_write)?;
        self.get(new.workspace_id, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Applies `change` to the workspace's schedule; `false` when there is no such schedule.
    /// A name clash is [`StoreError::Duplicate`].
    pub async fn update(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        change: &ScheduleUpdate,
    ) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_schedules SET name = COALESCE($3, name), \
             cron_expr = COALESCE($4, cron_expr), timezone = COALESCE($5, timezone), \
             prompt = COALESCE($6, prompt), enabled = COALESCE($7, enabled), \
             next_run_at = COALESCE($8, next_run_at), \
             consecutive_empty_runs = CASE WHEN $9 THEN 0 ELSE consecutive_empty_runs END, \
             updated_at = $10 WHERE id = $1 AND workspace_id = $2",
        );
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid(id),
            DbUuid::from(ws),
            change.name.clone(),
            change.cron_expr.clone(),
            change.timezone.clone(),
            change.prompt.clone(),
            change.enabled,
            change.next_run_at.map(DbTime::at),
            change.reset_empty_runs,
            DbTime::now();
            execute
        )
        .map_err(StoreError::from_write)?;
        Ok(n > 0)
    }

    /// Deletes the workspace's schedule; `false` when there is no such schedule.
    pub async fn delete(&self, ws: WorkspaceId, id: Uuid) -> Result<bool, StoreError> {
        let sql = Sql::same("DELETE FROM workspace_schedules WHERE id = $1 AND workspace_id = $2");
        let n = db_query!(
            self.db.exec(), query, sql, DbUuid(id), DbUuid::from(ws); execute
        )?;
        Ok(n > 0)
    }

    /// Sets when a schedule runs next (a trigger, or an operator); `false` when it is gone.
    pub async fn set_next_run(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_schedules SET next_run_at = $2, updated_at = $3 WHERE id = $1",
        );
        let n = db_query!(
            self.db.exec(), query, sql, DbUuid(id), DbTime::at(at), DbTime::now(); execute
        )?;
        Ok(n > 0)
    }

    /// Makes every enabled schedule with a next run whose lower-cased name contains one of
    /// `patterns` due at `at` (a GitHub trigger), only the workspace's when one is given;
    /// answers how many changed.
    pub async fn trigger_named(
        &self,
        patterns: &[&str],
        ws: Option<WorkspaceId>,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_schedules SET next_run_at = $2, updated_at = $2 \
             WHERE enabled AND next_run_at IS NOT NULL AND LOWER(name) LIKE $1 \
             AND ($3 IS NULL OR workspace_id = $3)",
        );
        let mut n = 0;
        let mut tx = self.db.begin().await?;
        for p in patterns {
            let like = format!("%{}%", p.to_lowercase());
            n += db_query!(
                tx.exec(), query, sql, like, DbTime::at(at), ws.map(DbUuid::from); execute
            )?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Disables every schedule of these workspaces (a workspace delete).
    pub async fn disable_for(&self, ids: &[WorkspaceId]) -> Result<u64, StoreError> {
        let mut n = 0;
        let sql = Sql::same(
            "UPDATE workspace_schedules SET enabled = false, updated_at = $2 \
             WHERE workspace_id = $1 AND enabled",
        );
        for id in ids {
            n += db_query!(
                self.db.exec(), query, sql, DbUuid::from(*id), DbTime::now(); execute
            )?;
        }
        Ok(n)
    }

    /// The schedule's latest `limit` history rows, newest first.
    pub async fn history(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        limit: i64,
    ) -> Result<Vec<CronRun>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct HistoryRow {
            created_at: DbTime,
            duration_ms: Option<i32>,
            status: Option<String>,
            error_detail: Option<String>,
            request_body: Option<Json<Value>>,
        }
        let sql = Sql::split(
            "SELECT created_at, duration_ms, status, error_detail, request_body \
             FROM activity_logs WHERE workspace_id = $1 AND activity_type = 'cron_run' \
             AND request_body->>'schedule_id' = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
            "SELECT created_at, duration_ms, status, error_detail, request_body \
             FROM activity_logs WHERE workspace_id = $1 AND activity_type = 'cron_run' \
             AND json_extract(request_body, '$.schedule_id') = $2 \
             ORDER BY created_at DESC, id DESC LIMIT $3",
        );
        let rows: Vec<HistoryRow> = db_query!(
            self.db.exec(), query_as::<HistoryRow>, sql,
            DbUuid::from(ws), id.to_string(), limit; fetch_all
        )?;
        Ok(rows
            .into_iter()
            .map(|r| CronRun {
                timestamp: r.created_at.0,
                duration_ms: r.duration_ms,
                status: r.status.unwrap_or_default(),
                error_detail: r.error_detail.unwrap_or_default(),
                request: r
                    .request_body
                    .map(|j| j.0)
                    .filter(|v| !v.is_null())
                    .unwrap_or_else(|| Value::Object(Default::default())),
            })
            .collect())
    }

    /// Every schedule of a workspace that is not removed, with the workspace's name, ordered
    /// by workspace name then schedule name.
    pub async fn all_with_workspace(&self) -> Result<Vec<ScheduleWithWorkspace>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Joined {
            #[sqlx(flatten)]
            row: Row,
            workspace_name: String,
        }
        let cols: String = COLUMNS
            .split(", ")
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = same(format!(
            "SELECT {cols}, w.name AS workspace_name FROM workspace_schedules s \
             JOIN workspaces w ON w.id = s.workspace_id WHERE w.status != 'removed' \
             ORDER BY w.name ASC, s.name ASC, s.id ASC"
        ));
        let rows: Vec<Joined> = db_query!(self.db.exec(), query_as::<Joined>, sql; fetch_all)?;
        Ok(rows
            .into_iter()
            .map(|j| ScheduleWithWorkspace {
                schedule: j.row.into(),
                workspace_name: j.workspace_name,
            })
            .collect())
    }

    /// Enabled schedules without a next run (start-up repair), any workspace status.
    pub async fn enabled_without_next_run(&self) -> Result<Vec<Schedule>, StoreError> {
        let sql = same(format!(
            "SELECT {COLUMNS} FROM workspace_schedules WHERE enabled AND next_run_at IS NULL"
        ));
        let rows: Vec<Row> = db_query!(self.db.exec(), query_as::<Row>, sql; fetch_all)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Sets `next_run_at` only where it is still NULL (start-up repair); `false` otherwise.
    pub async fn fill_next_run(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_schedules SET next_run_at = $2 WHERE id = $1 AND next_run_at IS NULL",
        );
        let n = db_query!(self.db.exec(), query, sql, DbUuid(id), DbTime::at(at); execute)?;
        Ok(n > 0)
    }

    /// The phantom-busy sweep: workspaces reporting active tasks with no activity row since
    /// `quiet_since` get `active_tasks = 0` and no current task. Answers the ones reset.
    pub async fn reset_phantom_busy(
        &self,
        quiet_since: OffsetDateTime,
    ) -> Result<Vec<WorkspaceId>, StoreError> {
        // The activity rows and heartbeats accepted so far count.
        self.hot.behind.barrier().await;
        let sql = Sql::same(
            "UPDATE workspaces SET active_tasks = 0, current_task = '', updated_at = $2 \
             WHERE active_tasks > 0 AND status != 'removed' AND id NOT IN \
             (SELECT DISTINCT workspace_id FROM activity_logs WHERE created_at > $1) \
             RETURNING id",
        );
        let ids: Vec<DbUuid> = db_query!(
            self.db.exec(), query_scalar::<DbUuid>, sql, DbTime::at(quiet_since), DbTime::now();
            fetch_all
        )?;
        let ids: Vec<WorkspaceId> = ids.into_iter().map(Into::into).collect();
        for id in &ids {
            self.hot.registry.forget_workspace(*id);
        }
        Ok(ids)
    }
}

pub(crate) fn same(sql: String) -> Sql {
    Sql::built(sql.clone(), sql)
}
