//! The A2A queue (`a2a_queue`): messages for a busy target, delivered at least once.
//!
//! A row is `queued`, handed to one deliverer at a time (`dispatched`), then `completed`,
//! `failed` (too many attempts), or `dropped` (stale or expired). An idempotency key (the A2A
//! `messageId`) is unique among a workspace's active (`queued`/`dispatched`) rows, so enqueueing
//! the same message twice answers the first row.

use std::str::FromStr;
use std::time::Duration;

use molecule_domain::{UnknownValue, WireEnum, WorkspaceId};
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbText, DbTime, DbUuid};

/// Priority of critical messages.
pub const PRIORITY_CRITICAL: i16 = 100;
/// Priority of tasks (the default).
pub const PRIORITY_TASK: i16 = 50;
/// Priority of informational messages.
pub const PRIORITY_INFO: i16 = 10;

/// Where a queue row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueStatus {
    /// Waiting for delivery.
    Queued,
    /// Handed to a deliverer.
    Dispatched,
    /// Delivered.
    Completed,
    /// Given up without delivery (stale or expired).
    Dropped,
    /// Given up after too many failed attempts.
    Failed,
}

impl QueueStatus {
    /// Every value.
    pub const ALL: &'static [QueueStatus] = &[
        QueueStatus::Queued,
        QueueStatus::Dispatched,
        QueueStatus::Completed,
        QueueStatus::Dropped,
        QueueStatus::Failed,
    ];

    /// The wire string (lowercase).
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Queued => "queued",
            QueueStatus::Dispatched => "dispatched",
            QueueStatus::Completed => "completed",
            QueueStatus::Dropped => "dropped",
            QueueStatus::Failed => "failed",
        }
    }
}

impl FromStr for QueueStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueStatus::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "queue status",
                value: s.to_owned(),
            })
    }
}

impl std::fmt::Display for QueueStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WireEnum for QueueStatus {
    fn wire_str(self) -> &'static str {
        self.as_str()
    }
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewQueueItem {
    /// The target workspace.
    pub workspace_id: WorkspaceId,
    /// The calling workspace (`None`: canvas or a system caller).
    pub caller_id: Option<WorkspaceId>,
    /// A system caller that is not a workspace (`webhook:…`, `system:…`, `channel:…`).
    pub caller: Option<String>,
    /// Higher first ([`PRIORITY_TASK`] normally).
    pub priority: i16,
    /// The normalised JSON-RPC request.
    pub body: Value,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The A2A `messageId`; unique among the workspace's active rows.
    pub idempotency_key: Option<String>,
    /// Not delivered after this time (`None`: no TTL).
    pub expires_at: Option<OffsetDateTime>,
}

/// One stored queue row.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// Row id (the `queue_id` of the API).
    pub id: Uuid,
    /// The target workspace.
    pub workspace_id: WorkspaceId,
    /// The calling workspace.
    pub caller_id: Option<WorkspaceId>,
    /// The system caller.
    pub caller: Option<String>,
    /// The priority.
    pub priority: i16,
    /// The request.
    pub body: Value,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The idempotency key.
    pub idempotency_key: Option<String>,
    /// When it was queued.
    pub enqueued_at: OffsetDateTime,
    /// When it was last handed out (`None` while queued).
    pub dispatched_at: Option<OffsetDateTime>,
    /// When it was delivered.
    pub completed_at: Option<OffsetDateTime>,
    /// Its expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// How many times it was handed out (and counted).
    pub attempts: i32,
    /// Where it is.
    pub status: QueueStatus,
    /// The errors of failed attempts and drop notes, `; `-separated.
    pub last_error: Option<String>,
    /// The answer of a delivered item.
    pub response_body: Option<Value>,
}

/// The outcome of [`Queue::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The queue row holding the message.
    pub id: Uuid,
    /// Deliverable rows of the workspace after the enqueue.
    pub depth: i64,
    /// Whether an active row with the same idempotency key already held it.
    pub existing: bool,
}

/// Every column, in the order of [`Row`].
const COLUMNS: &str = "id, workspace_id, caller_id, caller, priority, body, method, \
     idempotency_key, enqueued_at, dispatched_at, completed_at, expires_at, attempts, status, \
     last_error, response_body";

/// The rows that hold an idempotency key: not finished.
const ACTIVE: &str = "status IN ('queued', 'dispatched')";

/// A row deliverable at the time bound as `now` (`$1`, `$2`…): queued and not expired.
fn deliverable(now: &str) -> String {
    format!("status = 'queued' AND (expires_at IS NULL OR expires_at > {now})")
}

/// `last_error` with `note` (an SQL expression) appended after `; `.
fn append_to_last_error(note: &str) -> String {
    format!("last_error = COALESCE(last_error || '; ', '') || {note}")
}

/// A statement whose `__LOCK__` is ` FOR UPDATE SKIP LOCKED` on PostgreSQL, so that
/// concurrent callers pass each other's rows by, and nothing on SQLite (one writer at a time).
fn skip_locked(template: &str) -> Sql {
    Sql::built(
        template.replace("__LOCK__", " FOR UPDATE SKIP LOCKED"),
        template.replace("__LOCK__", ""),
    )
}

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    workspace_id: DbUuid,
    caller_id: Option<DbUuid>,
    caller: Option<String>,
    priority: i16,
    body: Json<Value>,
    method: Option<String>,
    idempotency_key: Option<String>,
    enqueued_at: DbTime,
    dispatched_at: Option<DbTime>,
    completed_at: Option<DbTime>,
    expires_at: Option<DbTime>,
    attempts: i32,
    status: DbText<QueueStatus>,
    last_error: Option<String>,
    response_body: Option<Json<Value>>,
}

impl From<Row> for QueueItem {
    fn from(r: Row) -> Self {
        QueueItem {
            id: r.id.0,
            workspace_id: r.workspace_id.into(),
            caller_id: r.caller_id.map(Into::into),
            caller: r.caller,
            priority: r.priority,
            body: r.body.0,
            method: r.method,
            idempotency_key: r.idempotency_key,
            enqueued_at: r.enqueued_at.0,
            dispatched_at: r.dispatched_at.map(|t| t.0),
            completed_at: r.completed_at.map(|t| t.0),
            expires_at: r.expires_at.map(|t| t.0),
            attempts: r.attempts,
            status: r.status.0,
            last_error: r.last_error,
            response_body: r.response_body.map(|j| j.0).filter(|v| !v.is_null()),
        }
    }
}

/// An optional string with the empty string as `None`.
fn text(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

/// How many times [`Queue::enqueue`] retries when the row holding its key finished between
/// its insert and its look-up.
const ENQUEUE_TRIES: usize = 3;

/// The A2A queue in the database.
#[derive(Debug, Clone, Copy)]
pub struct Queue<'a> {
    db: &'a Pool,
    hot: &'a crate::Hot,
}

impl<'a> Queue<'a> {
    pub(crate) fn new(db: &'a Pool, hot: &'a crate::Hot) -> Self {
        Self { db, hot }
    }

    /// Whether messages may be waiting in the queue of `ws` (`queued` rows). Answered from
    /// the registry cache when the queue is known to be empty; otherwise counted, and an
    /// empty answer kept until a message is queued (here or, through the cache listener, on
    /// another replica).
    pub async fn may_have_waiting(&self, ws: WorkspaceId) -> Result<bool, StoreError> {
        let registry = &self.hot.registry;
        if registry.queue_known_empty(ws) {
            return Ok(false);
        }
        let ticket = registry.ticket();
        let depth = self.depth(ws).await?;
        if depth == 0
            && let Some(ticket) = ticket
        {
            registry.fill_queue_empty(ticket, ws);
        }
        Ok(depth > 0)
    }

    /// Queues a message and marks the workspace's queue as possibly non-empty.
    pub async fn enqueue(&self, new: &NewQueueItem) -> Result<Enqueued, StoreError> {
        let done = self.enqueue_row(new).await;
        self.hot.registry.queue_not_empty(new.workspace_id);
        done
    }

    /// Queues a message. When an active (`queued` or `dispatched`) row of the workspace
    /// already holds its idempotency key, nothing is written and that row's id is answered
    /// with `existing: true`; never an error for a duplicate. Empty strings are stored as NULL.
    async fn enqueue_row(&self, new: &NewQueueItem) -> Result<Enqueued, StoreError> {
        let key = text(&new.idempotency_key);
        let insert = Sql::same(
            "INSERT INTO a2a_queue (id, workspace_id, caller_id, caller, priority, body, method, \
             idempotency_key, enqueued_at, expires_at, attempts, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 'queued') \
             ON CONFLICT (workspace_id, idempotency_key) \
             WHERE idempotency_key IS NOT NULL AND __ACTIVE__ \
             DO NOTHING",
        )
        .replace("__ACTIVE__", ACTIVE);
        let existing = Sql::same(
            "SELECT id FROM a2a_queue WHERE workspace_id = $1 AND idempotency_key = $2 \
             AND __ACTIVE__",
        )
        .replace("__ACTIVE__", ACTIVE);
        for _ in 0..ENQUEUE_TRIES {
            let id = Uuid::new_v4();
            let inserted = db_query!(
                self.db.exec(), query, insert,
                DbUuid(id),
                DbUuid::from(new.workspace_id),
                new.caller_id.map(DbUuid::from),
                text(&new.caller),
                new.priority,
                Json(&new.body),
                text(&new.method),
                key.clone(),
                DbTime::now(),
                new.expires_at.map(DbTime::at);
                execute
            )
            .map_err(StoreError::from_write)?;
            let (id, was_there) = if inserted > 0 {
                (id, false)
            } else {
                let found: Option<DbUuid> = db_query!(
                    self.db.exec(), query_scalar::<DbUuid>, existing,
                    DbUuid::from(new.workspace_id), key.clone();
                    fetch_optional
                )?;
                // The holder finished in between: its key is free again.
                let Some(found) = found else { continue };
                (found.0, true)
            };
            let depth = self.depth(new.workspace_id).await?;
            return Ok(Enqueued {
                id,
                depth,
                existing: was_there,
            });
        }
        Err(StoreError::Duplicate)
    }

    /// Hands out the workspace's next deliverable row (highest priority, then oldest; never an
    /// expired one): it becomes `dispatched` with `dispatched_at` now and one more attempt.
    /// Two concurrent callers never get the same row.
    pub async fn dequeue(&self, ws: WorkspaceId) -> Result<Option<QueueItem>, StoreError> {
        let sql = skip_locked(
            "UPDATE a2a_queue SET status = 'dispatched', dispatched_at = $2, \
             attempts = attempts + 1 \
             WHERE id = (SELECT id FROM a2a_queue WHERE workspace_id = $1 AND __DELIVERABLE__ \
             ORDER BY priority DESC, enqueued_at ASC, id ASC LIMIT 1__LOCK__) \
             RETURNING __COLUMNS__",
        )
        .replace("__DELIVERABLE__", &deliverable("$2"))
        .replace("__COLUMNS__", COLUMNS);
        // One statement, atomic on its own (SQLite's single writer; PostgreSQL's row lock,
        // skipping rows another drain holds): no BEGIN and COMMIT round trips around it. All
        // of its rows are read (at most one) so that the statement ends and commits here.
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), DbTime::now();
            fetch_all
        )?;
        Ok(rows.into_iter().next().map(Into::into))
    }

    /// Marks a `dispatched` row delivered, keeping the answer if one is given; `false` if the
    /// row is not `dispatched` (or does not exist).
    pub async fn complete(
        &self,
        id: Uuid,
        response_body: Option<&Value>,
    ) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE a2a_queue SET status = 'completed', completed_at = $2, \
             response_body = COALESCE($3, response_body) \
             WHERE id = $1 AND status = 'dispatched'",
        );
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), DbTime::now(), response_body.filter(|v| !v.is_null()).map(Json);
            execute
        )?;
        Ok(n > 0)
    }

    /// A failed delivery of a `dispatched` row: back to `queued` (no `dispatched_at`), or
    /// `failed` once it has had `max_attempts` attempts; `last_error` becomes `error`.
    /// Answers the row's status afterwards (unchanged if it was not `dispatched`);
    /// [`StoreError::QueueItemNotFound`] if there is no such row.
    pub async fn release(
        &self,
        id: Uuid,
        error: &str,
        max_attempts: i32,
    ) -> Result<QueueStatus, StoreError> {
        let sql = Sql::same(
            "UPDATE a2a_queue SET \
             status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'queued' END, \
             dispatched_at = NULL, last_error = $2 \
             WHERE id = $1 AND status = 'dispatched' RETURNING status",
        );
        let status: Option<DbText<QueueStatus>> = db_query!(
            self.db.exec(), query_scalar::<DbText<QueueStatus>>, sql,
            DbUuid(id), error.to_owned(), max_attempts;
            fetch_optional
        )?;
        self.hot.registry.forget_queues();
        match status {
            Some(s) => Ok(s.0),
            None => self
                .get(id)
                .await?
                .map(|item| item.status)
                .ok_or(StoreError::QueueItemNotFound),
        }
    }

    /// Puts a `dispatched` row back to `queued` without counting the attempt (the target was
    /// busy again: nothing was delivered); `false` if the row is not `dispatched`.
    pub async fn requeue(&self, id: Uuid) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE a2a_queue SET status = 'queued', dispatched_at = NULL, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $1 AND status = 'dispatched'",
        );
        let n = db_query!(self.db.exec(), query, sql, DbUuid(id); execute)?;
        self.hot.registry.forget_queues();
        Ok(n > 0)
    }

    /// One row.
    pub async fn get(&self, id: Uuid) -> Result<Option<QueueItem>, StoreError> {
        let sql = Sql::same("SELECT __COLUMNS__ FROM a2a_queue WHERE id = $1")
            .replace("__COLUMNS__", COLUMNS);
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid(id); fetch_optional)?;
        Ok(row.map(Into::into))
    }

    /// The workspace's deliverable rows: `queued` and not expired.
    pub async fn depth(&self, ws: WorkspaceId) -> Result<i64, StoreError> {
        let sql =
            Sql::same("SELECT COUNT(*) FROM a2a_queue WHERE workspace_id = $1 AND __DELIVERABLE__")
                .replace("__DELIVERABLE__", &deliverable("$2"));
        Ok(db_query!(
            self.db.exec(), query_scalar::<i64>, sql, DbUuid::from(ws), DbTime::now();
            fetch_one
        )?)
    }

    /// Drops `queued` rows enqueued more than `max_age` ago (of one workspace, or all),
    /// appending a note to `last_error`; answers how many.
    pub async fn drop_stale(
        &self,
        max_age: Duration,
        ws: Option<WorkspaceId>,
    ) -> Result<u64, StoreError> {
        let age = time::Duration::try_from(max_age).unwrap_or(time::Duration::MAX);
        let cutoff = OffsetDateTime::now_utc()
            .checked_sub(age)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let note = format!(
            "dropped: stale after {} minutes in the queue",
            max_age.as_secs() / 60
        );
        let scope = if ws.is_some() {
            "workspace_id = $3"
        } else {
            "$3 IS NULL"
        };
        let sql = skip_locked(&format!(
            "UPDATE a2a_queue SET status = 'dropped', {} \
             WHERE id IN (SELECT id FROM a2a_queue WHERE status = 'queued' \
             AND enqueued_at < $1 AND {scope}__LOCK__)",
            append_to_last_error("$2")
        ));
        Ok(db_query!(
            self.db.exec(), query, sql,
            DbTime::at(cutoff), note, ws.map(DbUuid::from);
            execute
        )?)
    }

    /// Drops `queued` rows whose `expires_at` has passed, appending `expired` to
    /// `last_error`; answers how many.
    pub async fn expire(&self) -> Result<u64, StoreError> {
        let sql = Sql::same(
            "UPDATE a2a_queue SET status = 'dropped', __NOTE__ \
             WHERE status = 'queued' AND expires_at IS NOT NULL AND expires_at <= $1",
        )
        .replace("__NOTE__", &append_to_last_error("'expired'"));
        Ok(db_query!(self.db.exec(), query, sql, DbTime::now(); execute)?)
    }

    /// Puts `dispatched` rows handed out before `dispatched_before` (orphaned by a crash of
    /// their deliverer) back to `queued`, noting it in `last_error`; answers how many.
    pub async fn reclaim(&self, dispatched_before: OffsetDateTime) -> Result<u64, StoreError> {
        let sql = Sql::same(
            "UPDATE a2a_queue SET status = 'queued', dispatched_at = NULL, __NOTE__ \
             WHERE status = 'dispatched' AND dispatched_at < $1",
        )
        .replace(
            "__NOTE__",
            &append_to_last_error("'reclaimed: delivery did not finish'"),
        );
        let n = db_query!(self.db.exec(), query, sql, DbTime::at(dispatched_before); execute)?;
        self.hot.registry.forget_queues();
        Ok(n)
    }

    /// The workspaces holding deliverable rows (`queued`, not expired).
    pub async fn with_queued(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let sql = Sql::same(
            "SELECT DISTINCT workspace_id FROM a2a_queue WHERE __DELIVERABLE__ ORDER BY workspace_id",
        )
        .replace("__DELIVERABLE__", &deliverable("$1"));
        let ids: Vec<DbUuid> = db_query!(
            self.db.exec(), query_scalar::<DbUuid>, sql, DbTime::now();
            fetch_all
        )?;
        Ok(ids.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_in_lowercase() {
        for s in QueueStatus::ALL {
            assert_eq!(s.as_str().parse::<QueueStatus>().unwrap(), *s);
            assert_eq!(s.to_string(), s.as_str().to_lowercase());
        }
        assert!("Queued".parse::<QueueStatus>().is_err());
    }
}
