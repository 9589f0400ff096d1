//! Agent model records (`agents`): which model a workspace's agent runs, one active record per
//! workspace, replaced, removed or moved as a unit.

use molecule_domain::WorkspaceId;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql, Tx};
use crate::types::{DbTime, DbUuid};
use crate::workspaces::is_live;

/// An active agent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// Its id.
    pub id: Uuid,
    /// Its model.
    pub model: Option<String>,
}

/// Why an agent operation changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRefusal {
    /// The workspace (or the move's target) does not exist or was removed.
    NoWorkspace,
    /// The workspace already has an active agent.
    AlreadyActive,
    /// The workspace has no active agent.
    NoActive,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    model: Option<String>,
}

impl From<Row> for AgentRecord {
    fn from(r: Row) -> Self {
        AgentRecord {
            id: r.id.0,
            model: r.model,
        }
    }
}

/// The active record of the workspace `$1`.
const SELECT_ACTIVE: &str =
    "SELECT id, model FROM agents WHERE workspace_id = $1 AND status = 'active'";

/// The agent records in the database.
#[derive(Debug, Clone, Copy)]
pub struct Agents<'a> {
    db: &'a Pool,
}

/// The active record of `ws`, locked for the transaction.
async fn active(tx: &mut Tx, ws: WorkspaceId) -> Result<Option<AgentRecord>, StoreError> {
    let sql = Sql::built(
        format!("{SELECT_ACTIVE} FOR UPDATE"),
        SELECT_ACTIVE.to_owned(),
    );
    let row: Option<Row> =
        db_query!(tx.exec(), query_as::<Row>, sql, DbUuid::from(ws); fetch_optional)?;
    Ok(row.map(Into::into))
}

async fn insert(tx: &mut Tx, ws: WorkspaceId, model: &str) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    let sql = Sql::same(
        "INSERT INTO agents (id, workspace_id, model, status, created_at) \
         VALUES ($1, $2, $3, 'active', $4)",
    );
    db_query!(
        tx.exec(), query, sql, DbUuid(id), DbUuid::from(ws), model.to_owned(), DbTime::now();
        execute
    )?;
    Ok(id)
}

async fn retire(tx: &mut Tx, id: Uuid, status: &str, reason: &str) -> Result<(), StoreError> {
    let sql = Sql::same(
        "UPDATE agents SET status = $2, removal_reason = $3, removed_at = $4 WHERE id = $1",
    );
    db_query!(
        tx.exec(), query, sql, DbUuid(id), status.to_owned(), reason.to_owned(), DbTime::now();
        execute
    )?;
    Ok(())
}

impl<'a> Agents<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// The active record of `ws`, if any.
    pub async fn active(&self, ws: WorkspaceId) -> Result<Option<AgentRecord>, StoreError> {
        let sql = Sql::same(SELECT_ACTIVE);
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws); fetch_optional)?;
        Ok(row.map(Into::into))
    }

    /// Assigns a first agent running `model` to `ws`.
    pub async fn assign(
        &self,
        ws: WorkspaceId,
        model: &str,
    ) -> Result<Result<Uuid, AgentRefusal>, StoreError> {
        let mut tx = self.db.begin().await?;
        if !is_live(&mut tx, ws).await? {
            return Ok(Err(AgentRefusal::NoWorkspace));
        }
        if active(&mut tx, ws).await?.is_some() {
            return Ok(Err(AgentRefusal::AlreadyActive));
        }
        let id = insert(&mut tx, ws, model).await?;
        tx.commit().await?;
        Ok(Ok(id))
    }

    /// Replaces the active agent of `ws` by one running `model`; answers the new id and the
    /// old model.
    pub async fn replace(
        &self,
        ws: WorkspaceId,
        model: &str,
    ) -> Result<Result<(Uuid, Option<String>), AgentRefusal>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some(old) = active(&mut tx, ws).await? else {
            return Ok(Err(AgentRefusal::NoActive));
        };
        retire(&mut tx, old.id, "replaced", "model_replaced").await?;
        let id = insert(&mut tx, ws, model).await?;
        tx.commit().await?;
        Ok(Ok((id, old.model)))
    }

    /// Removes the active agent of `ws`.
    pub async fn remove(
        &self,
        ws: WorkspaceId,
    ) -> Result<Result<AgentRecord, AgentRefusal>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some(old) = active(&mut tx, ws).await? else {
            return Ok(Err(AgentRefusal::NoActive));
        };
        retire(&mut tx, old.id, "removed", "manual_removal").await?;
        tx.commit().await?;
        Ok(Ok(old))
    }

    /// Moves the active agent of `from` to `to`, in one transaction: `to` must be live and
    /// have no active agent.
    pub async fn move_to(
        &self,
        from: WorkspaceId,
        to: WorkspaceId,
    ) -> Result<Result<AgentRecord, AgentRefusal>, StoreError> {
        let mut tx = self.db.begin().await?;
        if !is_live(&mut tx, to).await? {
            return Ok(Err(AgentRefusal::NoWorkspace));
        }
        if active(&mut tx, to).await?.is_some() {
            return Ok(Err(AgentRefusal::AlreadyActive));
        }
        let Some(agent) = active(&mut tx, from).await? else {
            return Ok(Err(AgentRefusal::NoActive));
        };
        let sql = Sql::same("UPDATE agents SET workspace_id = $2 WHERE id = $1");
        db_query!(tx.exec(), query, sql, DbUuid(agent.id), DbUuid::from(to); execute)?;
        tx.commit().await?;
        Ok(Ok(agent))
    }
}
