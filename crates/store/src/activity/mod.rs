//! The activity log (`activity_logs`): A2A traffic, agent self-reports, notifications, cron
//! runs and delegation bookkeeping, newest first or paged forward with a `(created_at, id)`
//! keyset cursor that never skips or repeats rows sharing a timestamp.

pub(crate) mod search;

use molecule_domain::WorkspaceId;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// The activity type of delegation rows.
pub const DELEGATION_TYPE: &str = "delegation";
/// The method of a delegation's request row.
pub const METHOD_DELEGATE: &str = "delegate";
/// The method of a delegation's result rows.
pub const METHOD_DELEGATE_RESULT: &str = "delegate_result";

/// Every column, in the order of [`Row`] and of the insert's binds.
pub(crate) const COLUMNS: &str = "id, workspace_id, activity_type, source_id, caller, target_id, method, \
     summary, request_body, response_body, tool_trace, duration_ms, status, error_detail, \
     idempotency_key, created_at";

/// The order of the newest rows first (ties broken by id, as the cursor is).
const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

/// A row to write into the activity log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewActivity {
    /// The workspace the row belongs to.
    pub workspace_id: WorkspaceId,
    /// `a2a_send`, `a2a_receive`, `delegation`, …
    pub activity_type: String,
    /// The calling workspace (`None`: the canvas, the platform, or a system caller).
    pub source_id: Option<WorkspaceId>,
    /// A system caller that is not a workspace (`webhook:github`, `system:…`, `channel:…`).
    pub caller: Option<String>,
    /// The workspace the activity was aimed at.
    pub target_id: Option<WorkspaceId>,
    /// The A2A or platform method.
    pub method: Option<String>,
    /// A one-line summary.
    pub summary: Option<String>,
    /// The request (a JSON `null` is stored as SQL NULL).
    pub request_body: Option<Value>,
    /// The response (a JSON `null` is stored as SQL NULL).
    pub response_body: Option<Value>,
    /// The agent's tool trace (a JSON `null` is stored as SQL NULL).
    pub tool_trace: Option<Value>,
    /// How long it took, in milliseconds (stored as a 32-bit integer, clamped).
    pub duration_ms: Option<i64>,
    /// `ok`, `error`, `timeout`, or a delegation/cron status; empty means `ok`.
    pub status: String,
    /// The error text, if any.
    pub error_detail: Option<String>,
    /// A key unique per workspace (delegation idempotency).
    pub idempotency_key: Option<String>,
}

impl NewActivity {
    /// A row of this type for this workspace with status `ok` and every other field empty.
    pub fn new(workspace_id: WorkspaceId, activity_type: impl Into<String>) -> Self {
        Self {
            workspace_id,
            activity_type: activity_type.into(),
            source_id: None,
            caller: None,
            target_id: None,
            method: None,
            summary: None,
            request_body: None,
            response_body: None,
            tool_trace: None,
            duration_ms: None,
            status: String::from("ok"),
            error_detail: None,
            idempotency_key: None,
        }
    }
}

/// One stored row of the activity log.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    /// Row id.
    pub id: Uuid,
    /// The workspace the row belongs to.
    pub workspace_id: WorkspaceId,
    /// The activity type.
    pub activity_type: String,
    /// The calling workspace.
    pub source_id: Option<WorkspaceId>,
    /// The system caller.
    pub caller: Option<String>,
    /// The target workspace.
    pub target_id: Option<WorkspaceId>,
    /// The method.
    pub method: Option<String>,
    /// The summary.
    pub summary: Option<String>,
    /// The request body (never `Some(Value::Null)`).
    pub request_body: Option<Value>,
    /// The response body (never `Some(Value::Null)`).
    pub response_body: Option<Value>,
    /// The tool trace (never `Some(Value::Null)`).
    pub tool_trace: Option<Value>,
    /// Duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// The status (empty if the stored value is NULL).
    pub status: String,
    /// The error text.
    pub error_detail: Option<String>,
    /// The idempotency key.
    pub idempotency_key: Option<String>,
    /// When the row was written.
    pub created_at: OffsetDateTime,
}

/// Which side started the activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFilter {
    /// The canvas or the platform: `source_id IS NULL`.
    Canvas,
    /// An agent: `source_id IS NOT NULL`.
    Agent,
}

/// The filters of [`Activity::list`]; they all apply together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Exact activity type.
    pub activity_type: Option<String>,
    /// Canvas- or agent-originated rows.
    pub source: Option<SourceFilter>,
    /// Rows whose source or target is this workspace.
    pub peer: Option<WorkspaceId>,
    /// Rows written strictly before this time.
    pub before: Option<OffsetDateTime>,
    /// Rows written at or after this time.
    pub since: Option<OffsetDateTime>,
    /// The `since_id` cursor: rows after this row of the same workspace in `(created_at, id)`
    /// order, oldest first. Without it the newest rows come first.
    pub after: Option<Uuid>,
    /// Exact method.
    pub method: Option<String>,
    /// At most this many rows (negative counts as 0).
    pub limit: i64,
}

impl Default for ActivityQuery {
    /// No filter, the newest 100 rows.
    fn default() -> Self {
        Self {
            activity_type: None,
            source: None,
            peer: None,
            before: None,
            since: None,
            after: None,
            method: None,
            limit: 100,
        }
    }
}

/// A change to delegation rows; `None` leaves a column as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationChange {
    /// The new status.
    pub status: String,
    /// A new summary.
    pub summary: Option<String>,
    /// A new response body.
    pub response_body: Option<Value>,
    /// A new error text.
    pub error_detail: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    workspace_id: DbUuid,
    activity_type: String,
    source_id: Option<DbUuid>,
    caller: Option<String>,
    target_id: Option<DbUuid>,
    method: Option<String>,
    summary: Option<String>,
    request_body: Option<Json<Value>>,
    response_body: Option<Json<Value>>,
    tool_trace: Option<Json<Value>>,
    duration_ms: Option<i32>,
    status: Option<String>,
    error_detail: Option<String>,
    idempotency_key: Option<String>,
    created_at: Option<DbTime>,
}

fn json_of(v: Option<Json<Value>>) -> Option<Value> {
    v.map(|j| j.0).filter(|v| !v.is_null())
}

impl From<Row> for ActivityRow {
    fn from(r: Row) -> Self {
        ActivityRow {
            id: r.id.0,
            workspace_id: r.workspace_id.into(),
            activity_type: r.activity_type,
            source_id: r.source_id.map(Into::into),
            caller: r.caller,
            target_id: r.target_id.map(Into::into),
            method: r.method,
            summary: r.summary,
            request_body: json_of(r.request_body),
            response_body: json_of(r.response_body),
            tool_trace: json_of(r.tool_trace),
            duration_ms: r.duration_ms.map(i64::from),
            status: r.status.unwrap_or_default(),
            error_detail: r.error_detail,
            idempotency_key: r.idempotency_key,
            created_at: r.created_at.map_or(OffsetDateTime::UNIX_EPOCH, |t| t.0),
        }
    }
}

/// The row `new` becomes when written at `created_at` (to the microsecond): a fresh id,
/// empty texts and JSON `null` bodies as `None`, an empty status as `ok`, the duration
/// clamped to 32 bits.
pub(crate) fn prepare(new: NewActivity, created_at: OffsetDateTime) -> ActivityRow {
    let keep = |v: Option<Value>| v.filter(|v| !v.is_null());
    let text = |v: Option<String>| v.filter(|s| !s.is_empty());
    let status = if new.status.is_empty() {
        String::from("ok")
    } else {
        new.status
    };
    let duration = new
        .duration_ms
        .map(|d| i64::from(i32::try_from(d.max(0)).unwrap_or(i32::MAX)));
    ActivityRow {
        id: Uuid::new_v4(),
        workspace_id: new.workspace_id,
        activity_type: new.activity_type,
        source_id: new.source_id,
        caller: text(new.caller),
        target_id: new.target_id,
        method: text(new.method),
        summary: text(new.summary),
        request_body: keep(new.request_body),
        response_body: keep(new.response_body),
        tool_trace: keep(new.tool_trace),
        duration_ms: duration,
        status,
        error_detail: text(new.error_detail),
        idempotency_key: text(new.idempotency_key),
        created_at: DbTime::at(created_at).0,
    }
}

/// `($n+1, …, $n+16)` without the parentheses: the placeholders of the row starting after
/// bind `n`.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=16)
        .map(|i| format!("${}", n + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An optional JSON value with JSON `null` as `None`.
fn body(v: &Option<Value>) -> Option<Json<&Value>> {
    v.as_ref().filter(|v| !v.is_null()).map(Json)
}

/// A bound of a time filter at the stored precision (microseconds), rounded up so that
/// `created_at < bound` and `created_at >= bound` mean the same as with the exact time.
fn micros_up(t: OffsetDateTime) -> DbTime {
    let down = DbTime::at(t);
    if down.0 < t {
        DbTime(down.0 + time::Duration::microseconds(1))
    } else {
        down
    }
}

/// The activity log in the database.
#[derive(Debug, Clone, Copy)]
pub struct Activity<'a> {
    db: &'a Pool,
    hot: &'a crate::Hot,
}

impl<'a> Activity<'a> {
    pub(crate) fn new(db: &'a Pool, hot: &'a crate::Hot) -> Self {
        Self { db, hot }
    }

    /// Waits for the rows queued by [`Activity::record_later`] before this read.
    async fn caught_up(&self) {
        self.hot.behind.barrier().await;
    }

    /// Writes a row now. An idempotency key the workspace already used is
    /// [`StoreError::Duplicate`]; a workspace that does not exist is [`StoreError::NotFound`].
    /// Empty strings are stored as NULL, an empty status as `ok`.
    pub async fn record(&self, new: &NewActivity) -> Result<ActivityRow, StoreError> {
        self.record_at(new, OffsetDateTime::now_utc()).await
    }

    /// [`Activity::record`] with an explicit creation time (imports, tests), kept to the
    /// microsecond.
    pub async fn record_at(
        &self,
        new: &NewActivity,
        created_at: OffsetDateTime,
    ) -> Result<ActivityRow, StoreError> {
        let row = prepare(new.clone(), created_at);
        let sql = Sql::same("INSERT INTO activity_logs (__COLUMNS__) VALUES (__VALUES__)")
            .replace("__COLUMNS__", COLUMNS)
            .replace("__VALUES__", &placeholders(0));
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(row.id),
            DbUuid::from(row.workspace_id),
            row.activity_type.clone(),
            row.source_id.map(DbUuid::from),
            row.caller.clone(),
            row.target_id.map(DbUuid::from),
            row.method.clone(),
            row.summary.clone(),
            row.request_body.as_ref().map(Json),
            row.response_body.as_ref().map(Json),
            row.tool_trace.as_ref().map(Json),
            row.duration_ms,
            row.status.clone(),
            row.error_detail.clone(),
            row.idempotency_key.clone(),
            DbTime::at(row.created_at);
            execute
        )
        .map_err(StoreError::from_write)?;
        Ok(row)
    }

    /// Queues a row for the group-commit writer and answers the id it will be stored under
    /// (its id and creation time are fixed now). Waits while the writer's buffer is full
    /// (back-pressure); once the row is committed the store's activity hook sees it. Reads of
    /// the activity log wait for the rows queued before them, so a reader never misses one.
    pub async fn record_later(&self, new: NewActivity) -> Uuid {
        let row = prepare(new, OffsetDateTime::now_utc());
        let id = row.id;
        self.hot.behind.push_activity(row).await;
        id
    }

    /// The rows of a workspace matching `query`: newest first, or with a cursor
    /// (`query.after`) the rows after it in `(created_at, id)` order, oldest first. A cursor
    /// that names no row of this workspace is [`StoreError::CursorNotFound`].
    pub async fn list(
        &self,
        ws: WorkspaceId,
        query: &ActivityQuery,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        self.caught_up().await;
        let cursor = match query.after {
            Some(id) => Some(
                self.created_at(ws, id)
                    .await?
                    .ok_or(StoreError::CursorNotFound)?,
            ),
            None => None,
        };
        // Every filter is bound (NULL when absent); an absent one is written as a condition
        // that is always true, so the planner sees only the filters in use.
        let mut sql = format!("SELECT {COLUMNS} FROM activity_logs WHERE workspace_id = $1");
        let mut filter = |present: bool, on: &str, off: &str| {
            sql.push_str(" AND ");
            sql.push_str(if present { on } else { off });
        };
        filter(
            query.activity_type.is_some(),
            "activity_type = $2",
            "$2 IS NULL",
        );
        filter(
            query.peer.is_some(),
            "(source_id = $3 OR target_id = $3)",
            "$3 IS NULL",
        );
        filter(query.before.is_some(), "created_at < $4", "$4 IS NULL");
        filter(query.since.is_some(), "created_at >= $5", "$5 IS NULL");
        filter(
            cursor.is_some(),
            "(created_at, id) > ($6, $7)",
            "$6 IS NULL AND $7 IS NULL",
        );
        filter(query.method.is_some(), "method = $8", "$8 IS NULL");
        match query.source {
            Some(SourceFilter::Canvas) => filter(true, "source_id IS NULL", ""),
            Some(SourceFilter::Agent) => filter(true, "source_id IS NOT NULL", ""),
            None => {}
        }
        sql.push(' ');
        sql.push_str(if cursor.is_some() {
            "ORDER BY created_at ASC, id ASC"
        } else {
            NEWEST_FIRST
        });
        sql.push_str(" LIMIT $9");
        let sql = Sql::built(sql.clone(), sql);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql,
            DbUuid::from(ws),
            query.activity_type.clone(),
            query.peer.map(DbUuid::from),
            query.before.map(micros_up),
            query.since.map(micros_up),
            cursor.map(|(t, _)| t),
            cursor.map(|(_, id)| DbUuid(id)),
            query.method.clone(),
            query.limit.max(0);
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The creation time and id of a row of this workspace.
    async fn created_at(
        &self,
        ws: WorkspaceId,
        id: Uuid,
    ) -> Result<Option<(DbTime, Uuid)>, StoreError> {
        let sql = Sql::same(
            "SELECT created_at FROM activity_logs WHERE id = $1 AND workspace_id = $2 \
             AND created_at IS NOT NULL",
        );
        let at: Option<DbTime> = db_query!(
            self.db.exec(), query_scalar::<DbTime>, sql, DbUuid(id), DbUuid::from(ws);
            fetch_optional
        )?;
        Ok(at.map(|t| (t, id)))
    }

    /// One row of this workspace.
    pub async fn get(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<ActivityRow>, StoreError> {
        self.caught_up().await;
        let sql =
            Sql::same("SELECT __COLUMNS__ FROM activity_logs WHERE id = $1 AND workspace_id = $2")
                .replace("__COLUMNS__", COLUMNS);
        let row: Option<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid(id), DbUuid::from(ws);
            fetch_optional
        )?;
        Ok(row.map(Into::into))
    }

    /// The row of this workspace with this idempotency key.
    pub async fn by_idempotency_key(
        &self,
        ws: WorkspaceId,
        key: &str,
    ) -> Result<Option<ActivityRow>, StoreError> {
        self.caught_up().await;
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM activity_logs WHERE workspace_id = $1 AND idempotency_key = $2",
        )
        .replace("__COLUMNS__", COLUMNS);
        let row: Option<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), key.to_owned();
            fetch_optional
        )?;
        Ok(row.map(Into::into))
    }

    /// Deletes this workspace's `failed` rows with this idempotency key (so a failed
    /// delegation can be tried again under its key); answers how many.
    pub async fn delete_failed_with_key(
        &self,
        ws: WorkspaceId,
        key: &str,
    ) -> Result<u64, StoreError> {
        let sql = Sql::same(
            "DELETE FROM activity_logs WHERE workspace_id = $1 AND idempotency_key = $2 \
             AND status = 'failed'",
        );
        Ok(db_query!(
            self.db.exec(), query, sql, DbUuid::from(ws), key.to_owned();
            execute
        )?)
    }

    /// The newest delegation rows (request and result rows) of a workspace, at most `limit`.
    pub async fn delegation_rows(
        &self,
        ws: WorkspaceId,
        limit: i64,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        self.caught_up().await;
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM activity_logs WHERE workspace_id = $1 \
             AND activity_type = 'delegation' AND method IN ('delegate', 'delegate_result') \
             __NEWEST_FIRST__ LIMIT $2",
        )
        .replace("__COLUMNS__", COLUMNS)
        .replace("__NEWEST_FIRST__", NEWEST_FIRST);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), limit.max(0);
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Applies `change` to this workspace's delegation rows with this `method` whose request
    /// or response body carries `delegation_id`; answers how many rows changed.
    pub async fn update_delegation(
        &self,
        ws: WorkspaceId,
        delegation_id: &str,
        method: &str,
        change: &DelegationChange,
    ) -> Result<u64, StoreError> {
        let sql = Sql::same(
            "UPDATE activity_logs SET status = $4, summary = COALESCE($5, summary), \
             response_body = COALESCE($6, response_body), \
             error_detail = COALESCE($7, error_detail) \
             WHERE workspace_id = $1 AND activity_type = 'delegation' AND method = $3 \
             AND (request_body ->> 'delegation_id' = $2 OR response_body ->> 'delegation_id' = $2)",
        );
        Ok(db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(ws),
            delegation_id.to_owned(),
            method.to_owned(),
            change.status.clone(),
            change.summary.clone(),
            body(&change.response_body),
            change.error_detail.clone();
            execute
        )?)
    }

    /// Deletes every row written before `cutoff` (the retention sweep); answers how many.
    pub async fn prune_older_than(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let sql = Sql::same("DELETE FROM activity_logs WHERE created_at < $1");
        Ok(db_query!(self.db.exec(), query, sql, DbTime::at(cutoff); execute)?)
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::micros_up;

    #[test]
    fn time_bounds_round_up_to_the_stored_precision() {
        let exact = OffsetDateTime::from_unix_timestamp_nanos(1_000_123_456_000).unwrap();
        assert_eq!(micros_up(exact).0, exact);
        let finer = OffsetDateTime::from_unix_timestamp_nanos(1_000_123_456_700).unwrap();
        assert_eq!(
            micros_up(finer).0,
            OffsetDateTime::from_unix_timestamp_nanos(1_000_123_457_000).unwrap()
        );
    }
}
