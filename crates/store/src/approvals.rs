//! Approval requests: an agent asks, a person decides once (`approval_requests`).

use molecule_domain::WorkspaceId;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// How many approvals a listing answers at most.
pub const APPROVAL_LIST_LIMIT: i64 = 50;

/// A new approval request.
#[derive(Debug, Clone, Default)]
pub struct NewApproval {
    /// What the agent wants to do.
    pub action: String,
    /// The agent's task, if it says.
    pub task_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Anything else the agent attaches (a JSON object), or none.
    pub context: Option<Value>,
}

/// A stored approval request.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// Its id.
    pub id: Uuid,
    /// The workspace that asked.
    pub workspace_id: Option<WorkspaceId>,
    /// The asking workspace's name (in the pending listing).
    pub workspace_name: Option<String>,
    /// The agent's task.
    pub task_id: Option<String>,
    /// What the agent wants to do.
    pub action: String,
    /// Why.
    pub reason: Option<String>,
    /// `pending`, `approved` or `denied`.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<OffsetDateTime>,
    /// When it was asked.
    pub created_at: OffsetDateTime,
}

/// Why a decision was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecided {
    /// No approval with that id belongs to that workspace.
    NotFound,
    /// It was decided before (or expired).
    AlreadyDecided,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    workspace_id: Option<DbUuid>,
    workspace_name: Option<String>,
    task_id: Option<String>,
    action: String,
    reason: Option<String>,
    status: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<DbTime>,
    created_at: Option<DbTime>,
}

impl From<Row> for Approval {
    fn from(r: Row) -> Self {
        Approval {
            id: r.id.0,
            workspace_id: r.workspace_id.map(Into::into),
            workspace_name: r.workspace_name,
            task_id: r.task_id,
            action: r.action,
            reason: r.reason,
            status: r.status.unwrap_or_else(|| "pending".into()),
            decided_by: r.decided_by,
            decided_at: r.decided_at.map(|t| t.0),
            created_at: r.created_at.map_or(OffsetDateTime::UNIX_EPOCH, |t| t.0),
        }
    }
}

/// The rows with their workspace's name (`a`: the request, `w`: its workspace), in the
/// order of [`Row`]; a `WHERE` follows.
const SELECT: &str = "SELECT a.id, a.workspace_id, w.name AS workspace_name, a.task_id, a.action, \
     a.reason, a.status, a.decided_by, a.decided_at, a.created_at \
     FROM approval_requests a LEFT JOIN workspaces w ON w.id = a.workspace_id";

/// The approval requests in the database.
#[derive(Debug, Clone, Copy)]
pub struct Approvals<'a> {
    db: &'a Pool,
}

impl<'a> Approvals<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Records a pending request of `ws`.
    pub async fn create(&self, ws: WorkspaceId, new: &NewApproval) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        let sql = Sql::same(
            "INSERT INTO approval_requests \
             (id, workspace_id, task_id, action, reason, context, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(id),
            DbUuid::from(ws),
            new.task_id.clone(),
            new.action.clone(),
            new.reason.clone(),
            new.context.clone().map(Json),
            DbTime::now();
            execute
        )
        .map_err(StoreError::from_write)?;
        Ok(id)
    }

    /// The newest requests of `ws`, any status.
    pub async fn of_workspace(&self, ws: WorkspaceId) -> Result<Vec<Approval>, StoreError> {
        let sql = Sql::same(
            "__SELECT__ WHERE a.workspace_id = $1 \
             ORDER BY a.created_at DESC, a.id DESC LIMIT $2",
        )
        .replace("__SELECT__", SELECT);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), APPROVAL_LIST_LIMIT;
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The newest pending requests of every workspace, with the workspace's name.
    pub async fn pending(&self) -> Result<Vec<Approval>, StoreError> {
        let sql = Sql::same(
            "__SELECT__ WHERE a.status = 'pending' \
             ORDER BY a.created_at DESC, a.id DESC LIMIT $1",
        )
        .replace("__SELECT__", SELECT);
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, APPROVAL_LIST_LIMIT; fetch_all)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Denies, as `auto-expired`, every pending request asked before `cutoff`; answers them.
    pub async fn expire(&self, cutoff: OffsetDateTime) -> Result<Vec<Approval>, StoreError> {
        let mut tx = self.db.begin().await?;
        let sql = Sql::split(
            "__SELECT__ WHERE a.status = 'pending' AND a.created_at < $1 \
             FOR UPDATE OF a",
            "__SELECT__ WHERE a.status = 'pending' AND a.created_at < $1",
        )
        .replace("__SELECT__", SELECT);
        let rows: Vec<Row> =
            db_query!(tx.exec(), query_as::<Row>, sql, DbTime::at(cutoff); fetch_all)?;
        let now = DbTime::now();
        let update = Sql::same(
            "UPDATE approval_requests SET status = 'denied', decided_by = 'auto-expired', \
             decided_at = $2 WHERE id = $1 AND status = 'pending'",
        );
        let mut expired = Vec::with_capacity(rows.len());
        for row in rows {
            db_query!(tx.exec(), query, update, DbUuid(row.id.0), now; execute)?;
            let mut approval = Approval::from(row);
            approval.status = "denied".into();
            approval.decided_by = Some("auto-expired".into());
            approval.decided_at = Some(now.0);
            expired.push(approval);
        }
        tx.commit().await?;
        Ok(expired)
    }

    /// Records the decision on a pending request of `ws`, once.
    pub async fn decide(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        decision: &str,
        decided_by: &str,
    ) -> Result<Result<(), Undecided>, StoreError> {
        let sql = Sql::same(
            "UPDATE approval_requests SET status = $3, decided_by = $4, decided_at = $5 \
             WHERE id = $1 AND workspace_id = $2 AND status = 'pending'",
        );
        let done = db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), DbUuid::from(ws), decision.to_owned(), decided_by.to_owned(), DbTime::now();
            execute
        )?;
        if done > 0 {
            return Ok(Ok(()));
        }
        let exists =
            Sql::same("SELECT COUNT(*) FROM approval_requests WHERE id = $1 AND workspace_id = $2");
        let n = db_query!(
            self.db.exec(), query_scalar::<i64>, exists, DbUuid(id), DbUuid::from(ws);
            fetch_one
        )?;
        Ok(Err(if n > 0 {
            Undecided::AlreadyDecided
        } else {
            Undecided::NotFound
        }))
    }
}
