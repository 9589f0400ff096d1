//! Key/value memory (`workspace_memory`, `observability.md` §1.11): JSON values per workspace
//! and key, with an optional expiry and a version for optimistic locking.

use molecule_domain::WorkspaceId;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// One live entry.
#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Bumped by every write; 1 when created.
    pub version: i64,
    /// When it stops being listed, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// The last write.
    pub updated_at: OffsetDateTime,
}

/// The outcome of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWrite {
    /// Written; the entry's new version.
    Written(i64),
    /// `if_match_version` did not match: the current version (`None`: no such key).
    Mismatch(Option<i64>),
}

#[derive(sqlx::FromRow)]
struct Row {
    key: String,
    value: Json<Value>,
    version: i64,
    expires_at: Option<DbTime>,
    updated_at: DbTime,
}

impl From<Row> for KvEntry {
    fn from(r: Row) -> Self {
        KvEntry {
            key: r.key,
            value: r.value.0,
            version: r.version,
            expires_at: r.expires_at.map(|t| t.0),
            updated_at: r.updated_at.0,
        }
    }
}

const COLUMNS: &str = "key, value, version, expires_at, updated_at";

/// The key/value memory of every workspace.
#[derive(Debug, Clone, Copy)]
pub struct KvMemory<'a> {
    db: &'a Pool,
}

impl<'a> KvMemory<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// The unexpired entries of `ws`, by key.
    pub async fn list(&self, ws: WorkspaceId) -> Result<Vec<KvEntry>, StoreError> {
        let sql = Sql::same(
            "SELECT __C__ FROM workspace_memory WHERE workspace_id = $1 \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY key",
        )
        .replace("__C__", COLUMNS);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), DbTime::now();
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One unexpired entry.
    pub async fn get(&self, ws: WorkspaceId, key: &str) -> Result<Option<KvEntry>, StoreError> {
        let sql = Sql::same(
            "SELECT __C__ FROM workspace_memory WHERE workspace_id = $1 AND key = $2 \
             AND (expires_at IS NULL OR expires_at > $3)",
        )
        .replace("__C__", COLUMNS);
        let row: Option<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql,
            DbUuid::from(ws), key.to_owned(), DbTime::now();
            fetch_optional
        )?;
        Ok(row.map(Into::into))
    }

    /// Writes `key`. Without `if_match` the last write wins (a new key gets version 1, a
    /// write bumps it). With `if_match = V`, only a row at version `V` is updated; `V = 0`
    /// creates an absent key. An expired row still counts as present. A missing workspace is
    /// [`StoreError::NotFound`].
    pub async fn set(
        &self,
        ws: WorkspaceId,
        key: &str,
        value: &Value,
        expires_at: Option<OffsetDateTime>,
        if_match: Option<i64>,
    ) -> Result<KvWrite, StoreError> {
        let now = DbTime::now();
        let expires = expires_at.map(DbTime::at);
        let Some(expected) = if_match else {
            let sql = Sql::same(
                "INSERT INTO workspace_memory \
                 (id, workspace_id, key, value, expires_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1) \
                 ON CONFLICT (workspace_id, key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at, \
                 version = workspace_memory.version + 1 RETURNING version",
            );
            let version: i64 = db_query!(
                self.db.exec(), query_scalar::<i64>, sql,
                DbUuid(Uuid::new_v4()), DbUuid::from(ws), key.to_owned(),
                Json(value.clone()), expires, now;
                fetch_one
            )
            .map_err(StoreError::from_write)?;
            return Ok(KvWrite::Written(version));
        };
        let update = Sql::same(
            "UPDATE workspace_memory SET value = $3, expires_at = $4, updated_at = $5, \
             version = version + 1 WHERE workspace_id = $1 AND key = $2 AND version = $6 \
             RETURNING version",
        );
        let updated: Option<i64> = db_query!(
            self.db.exec(), query_scalar::<i64>, update,
            DbUuid::from(ws), key.to_owned(), Json(value.clone()), expires, now, expected;
            fetch_optional
        )?;
        if let Some(version) = updated {
            return Ok(KvWrite::Written(version));
        }
        if expected == 0 {
            let insert = Sql::same(
                "INSERT INTO workspace_memory \
                 (id, workspace_id, key, value, expires_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1) \
                 ON CONFLICT (workspace_id, key) DO NOTHING RETURNING version",
            );
            let inserted: Option<i64> = db_query!(
                self.db.exec(), query_scalar::<i64>, insert,
                DbUuid(Uuid::new_v4()), DbUuid::from(ws), key.to_owned(),
                Json(value.clone()), expires, now;
                fetch_optional
            )
            .map_err(StoreError::from_write)?;
            if let Some(version) = inserted {
                return Ok(KvWrite::Written(version));
            }
        }
        let probe =
            Sql::same("SELECT version FROM workspace_memory WHERE workspace_id = $1 AND key = $2");
        let current: Option<i64> = db_query!(
            self.db.exec(), query_scalar::<i64>, probe, DbUuid::from(ws), key.to_owned();
            fetch_optional
        )?;
        Ok(KvWrite::Mismatch(current))
    }

    /// Deletes `key` of `ws`; how many rows went (0 or 1).
    pub async fn delete(&self, ws: WorkspaceId, key: &str) -> Result<u64, StoreError> {
        let sql = Sql::same("DELETE FROM workspace_memory WHERE workspace_id = $1 AND key = $2");
        Ok(db_query!(self.db.exec(), query, sql, DbUuid::from(ws), key.to_owned(); execute)?)
    }
}
