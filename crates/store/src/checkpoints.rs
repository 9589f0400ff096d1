//! Workflow checkpoints (`workflow_checkpoints`, `observability.md` §1.13): one row per
//! (workspace, workflow, step), upserted as the workflow runs.

use molecule_domain::WorkspaceId;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// One completed step.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Its id.
    pub id: Uuid,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The workflow.
    pub workflow_id: String,
    /// The step.
    pub step_name: String,
    /// The step's position.
    pub step_index: i32,
    /// When it was (last) completed.
    pub completed_at: OffsetDateTime,
    /// What the step left (JSON `null` when nothing).
    pub payload: Option<Value>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    workspace_id: DbUuid,
    workflow_id: String,
    step_name: String,
    step_index: i32,
    completed_at: DbTime,
    payload: Option<Json<Value>>,
}

impl From<Row> for Checkpoint {
    fn from(r: Row) -> Self {
        Checkpoint {
            id: r.id.0,
            workspace_id: r.workspace_id.into(),
            workflow_id: r.workflow_id,
            step_name: r.step_name,
            step_index: r.step_index,
            completed_at: r.completed_at.0,
            payload: r.payload.map(|p| p.0),
        }
    }
}

const COLUMNS: &str = "id, workspace_id, workflow_id, step_name, step_index, completed_at, payload";

/// The workflow checkpoints of every workspace.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoints<'a> {
    db: &'a Pool,
}

impl<'a> Checkpoints<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Records a step as completed now (again: index and payload replaced); answers the row's
    /// id. A missing workspace is [`StoreError::NotFound`].
    pub async fn upsert(
        &self,
        ws: WorkspaceId,
        workflow_id: &str,
        step_name: &str,
        step_index: i32,
        payload: &Value,
    ) -> Result<Uuid, StoreError> {
        let sql = Sql::same(
            "INSERT INTO workflow_checkpoints \
             (id, workspace_id, workflow_id, step_name, step_index, completed_at, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (workspace_id, workflow_id, step_name) DO UPDATE SET \
             step_index = excluded.step_index, completed_at = excluded.completed_at, \
             payload = excluded.payload RETURNING id",
        );
        let id: DbUuid = db_query!(
            self.db.exec(), query_scalar::<DbUuid>, sql,
            DbUuid(Uuid::new_v4()), DbUuid::from(ws), workflow_id.to_owned(),
            step_name.to_owned(), step_index, DbTime::now(), Json(payload.clone());
            fetch_one
        )
        .map_err(StoreError::from_write)?;
        Ok(id.0)
    }

    /// The steps of one workflow, highest index first.
    pub async fn of_workflow(
        &self,
        ws: WorkspaceId,
        workflow_id: &str,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let sql = Sql::same(
            "SELECT __C__ FROM workflow_checkpoints WHERE workspace_id = $1 AND workflow_id = $2 \
             ORDER BY step_index DESC, completed_at DESC",
        )
        .replace("__C__", COLUMNS);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), workflow_id.to_owned();
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The most recently completed step of any workflow of `ws`.
    pub async fn latest(&self, ws: WorkspaceId) -> Result<Option<Checkpoint>, StoreError> {
        let sql = Sql::same(
            "SELECT __C__ FROM workflow_checkpoints WHERE workspace_id = $1 \
             ORDER BY completed_at DESC, id DESC LIMIT 1",
        )
        .replace("__C__", COLUMNS);
        let row: Option<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws);
            fetch_optional
        )?;
        Ok(row.map(Into::into))
    }

    /// Deletes every step of one workflow; how many.
    pub async fn delete_workflow(
        &self,
        ws: WorkspaceId,
        workflow_id: &str,
    ) -> Result<u64, StoreError> {
        let sql = Sql::same(
            "DELETE FROM workflow_checkpoints WHERE workspace_id = $1 AND workflow_id = $2",
        );
        Ok(db_query!(
            self.db.exec(), query, sql, DbUuid::from(ws), workflow_id.to_owned();
            execute
        )?)
    }
}
