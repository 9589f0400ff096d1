//! Canvas positions and the collapsed flag of workspaces.

use std::collections::HashMap;

use molecule_domain::WorkspaceId;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::DbUuid;

/// Inserts or updates one layout: `$1` id, `$2`/`$3` position, `$4` collapsed; a NULL keeps
/// the stored value.
pub(crate) const UPSERT: Sql = Sql::same(
    "INSERT INTO canvas_layouts (workspace_id, x, y, collapsed) \
     VALUES ($1, COALESCE($2, 0), COALESCE($3, 0), COALESCE($4, false)) \
     ON CONFLICT (workspace_id) DO UPDATE SET \
       x = COALESCE($2, canvas_layouts.x), y = COALESCE($3, canvas_layouts.y), \
       collapsed = COALESCE($4, canvas_layouts.collapsed)",
);

/// Where a workspace sits on the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Layout {
    /// Horizontal position.
    pub x: f64,
    /// Vertical position.
    pub y: f64,
    /// Whether its children are folded away.
    pub collapsed: bool,
}

#[derive(sqlx::FromRow)]
struct Row {
    workspace_id: DbUuid,
    x: f64,
    y: f64,
    collapsed: Option<bool>,
}

/// The canvas layouts in the database.
#[derive(Debug, Clone, Copy)]
pub struct Layouts<'a> {
    db: &'a Pool,
}

impl<'a> Layouts<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Every stored layout, by workspace.
    pub async fn all(&self) -> Result<HashMap<WorkspaceId, Layout>, StoreError> {
        let sql = Sql::same("SELECT workspace_id, x, y, collapsed FROM canvas_layouts");
        let rows: Vec<Row> = db_query!(self.db.exec(), query_as::<Row>, sql; fetch_all)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.workspace_id.into(),
                    Layout {
                        x: r.x,
                        y: r.y,
                        collapsed: r.collapsed.unwrap_or(false),
                    },
                )
            })
            .collect())
    }

    /// The layout of one workspace, if stored.
    pub async fn get(&self, id: WorkspaceId) -> Result<Option<Layout>, StoreError> {
        let sql = Sql::same(
            "SELECT workspace_id, x, y, collapsed FROM canvas_layouts WHERE workspace_id = $1",
        );
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(id); fetch_optional)?;
        Ok(row.map(|r| Layout {
            x: r.x,
            y: r.y,
            collapsed: r.collapsed.unwrap_or(false),
        }))
    }

    /// Stores a layout: the position, the collapsed flag, or both (`None` keeps the stored
    /// value, or the default for a new row).
    pub async fn upsert(
        &self,
        id: WorkspaceId,
        position: Option<(f64, f64)>,
        collapsed: Option<bool>,
    ) -> Result<(), StoreError> {
        db_query!(
            self.db.exec(), query, UPSERT,
            DbUuid::from(id),
            position.map(|p| p.0),
            position.map(|p| p.1),
            collapsed;
            execute
        )?;
        Ok(())
    }
}
