//! The structure event log: every recorded event, append-only.

use molecule_domain::WorkspaceId;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Db, Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// One row of `structure_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Row id.
    pub id: Uuid,
    /// The event's wire name, e.g. `WORKSPACE_ONLINE`.
    pub event_type: String,
    /// The workspace the event is about.
    pub workspace_id: Option<WorkspaceId>,
    /// The payload as recorded.
    pub payload: Option<Value>,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
}

/// Every column, in the order of [`Row`] and of the insert's binds.
const COLUMNS: &str = "id, event_type, workspace_id, payload, created_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    event_type: String,
    workspace_id: Option<DbUuid>,
    payload: Option<Json<Value>>,
    created_at: Option<DbTime>,
}

impl From<Row> for StoredEvent {
    fn from(r: Row) -> Self {
        StoredEvent {
            id: r.id.0,
            event_type: r.event_type,
            workspace_id: r.workspace_id.map(Into::into),
            payload: r.payload.map(|j| j.0),
            created_at: r.created_at.map_or(OffsetDateTime::UNIX_EPOCH, |t| t.0),
        }
    }
}

/// The structure events in the database.
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    db: &'a Pool,
}

impl<'a> Events<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Appends an event and returns the stored row.
    pub async fn record(
        &self,
        event_type: &str,
        workspace_id: Option<WorkspaceId>,
        payload: &Value,
    ) -> Result<StoredEvent, StoreError> {
        let id = Uuid::new_v4();
        let now = DbTime::now();
        let sql =
            Sql::same("INSERT INTO structure_events (__COLUMNS__) VALUES ($1, $2, $3, $4, $5)")
                .replace("__COLUMNS__", COLUMNS);
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(id),
            event_type.to_owned(),
            workspace_id.map(DbUuid::from),
            Json(payload),
            now;
            execute
        )?;
        Ok(StoredEvent {
            id,
            event_type: event_type.to_owned(),
            workspace_id,
            payload: Some(payload.clone()),
            created_at: now.0,
        })
    }

    /// The newest events (of one workspace, or all), newest first, at most `limit`.
    pub async fn recent(
        &self,
        workspace_id: Option<WorkspaceId>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<Row> = match workspace_id {
            Some(ws) => {
                let sql = Sql::same(
                    "SELECT __COLUMNS__ FROM structure_events \
                     WHERE workspace_id = $1 ORDER BY created_at DESC, id LIMIT $2",
                )
                .replace("__COLUMNS__", COLUMNS);
                db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), limit; fetch_all)?
            }
            None => {
                let sql = Sql::same(
                    "SELECT __COLUMNS__ FROM structure_events ORDER BY created_at DESC, id LIMIT $1",
                )
                .replace("__COLUMNS__", COLUMNS);
                db_query!(self.db.exec(), query_as::<Row>, sql, limit; fetch_all)?
            }
        };
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One event by id.
    pub async fn get(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let sql = Sql::same("SELECT __COLUMNS__ FROM structure_events WHERE id = $1")
            .replace("__COLUMNS__", COLUMNS);
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid(id); fetch_optional)?;
        Ok(row.map(Into::into))
    }

    /// Sends `payload` to every listener of `channel` (`pg_notify`) on PostgreSQL; does
    /// nothing on SQLite. The payload must be at most [`crate::MAX_NOTIFY_BYTES`] long.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        match self.db {
            Db::Postgres(p) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(payload)
                    .execute(p)
                    .await?;
            }
            Db::Sqlite(_) => {}
        }
        Ok(())
    }
}
