//! The canvas viewport (one global row) and each workspace's config blob.

use molecule_domain::WorkspaceId;
use serde_json::{Map, Value};
use sqlx::types::Json;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// The fixed id of the one viewport row (the reference's).
pub const VIEWPORT_ID: Uuid = Uuid::from_u128(1);

/// Where the canvas looks and how close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    /// Horizontal offset.
    pub x: f64,
    /// Vertical offset.
    pub y: f64,
    /// Zoom factor.
    pub zoom: f64,
}

impl Default for Viewport {
    fn default() -> Self {
        Viewport {
            x: 0.0,
            y: 0.0,
            zoom: 1.0,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ViewportRow {
    x: f64,
    y: f64,
    zoom: f64,
}

/// The canvas viewport and workspace config blobs in the database.
#[derive(Debug, Clone, Copy)]
pub struct Canvas<'a> {
    db: &'a Pool,
}

impl<'a> Canvas<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// The saved viewport, if any.
    pub async fn viewport(&self) -> Result<Option<Viewport>, StoreError> {
        let sql = Sql::same(
            "SELECT x, y, zoom FROM canvas_viewport ORDER BY saved_at DESC NULLS LAST LIMIT 1",
        );
        let row: Option<ViewportRow> =
            db_query!(self.db.exec(), query_as::<ViewportRow>, sql; fetch_optional)?;
        Ok(row.map(|r| Viewport {
            x: r.x,
            y: r.y,
            zoom: r.zoom,
        }))
    }

    /// Saves the viewport (the one row).
    pub async fn save_viewport(&self, v: Viewport) -> Result<(), StoreError> {
        let sql = Sql::same(
            "INSERT INTO canvas_viewport (id, x, y, zoom, saved_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET x = excluded.x, y = excluded.y, \
             zoom = excluded.zoom, saved_at = excluded.saved_at",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(VIEWPORT_ID), v.x, v.y, v.zoom, DbTime::now();
            execute
        )?;
        Ok(())
    }

    /// A workspace's config blob (`{}` when none was saved).
    pub async fn config(&self, ws: WorkspaceId) -> Result<Value, StoreError> {
        let sql = Sql::same("SELECT data FROM workspace_config WHERE workspace_id = $1");
        let data: Option<Json<Value>> = db_query!(
            self.db.exec(), query_scalar::<Json<Value>>, sql, DbUuid::from(ws);
            fetch_optional
        )?;
        Ok(data.map_or_else(|| Value::Object(Map::new()), |j| j.0))
    }

    /// Merges `patch` into a workspace's config blob, one level deep (its top-level keys
    /// replace the stored ones), in one transaction. A missing workspace is
    /// [`StoreError::NotFound`].
    pub async fn merge_config(
        &self,
        ws: WorkspaceId,
        patch: Map<String, Value>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let read = Sql::split(
            "SELECT data FROM workspace_config WHERE workspace_id = $1 FOR UPDATE",
            "SELECT data FROM workspace_config WHERE workspace_id = $1",
        );
        let stored: Option<Json<Value>> = db_query!(
            tx.exec(), query_scalar::<Json<Value>>, read, DbUuid::from(ws);
            fetch_optional
        )?;
        let mut data = match stored.map(|j| j.0) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        data.extend(patch);
        let write = Sql::same(
            "INSERT INTO workspace_config (workspace_id, data, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (workspace_id) DO UPDATE SET data = excluded.data, \
             updated_at = excluded.updated_at",
        );
        db_query!(
            tx.exec(), query, write,
            DbUuid::from(ws), Json(Value::Object(data)), DbTime::now();
            execute
        )
        .map_err(StoreError::from_write)?;
        tx.commit().await?;
        Ok(())
    }
}
