//! The workspaces repository: create, read, list, update in one transaction, and the guarded
//! status transition.

use molecule_domain::{DeliveryMode, Runtime, Tier, WorkspaceAccess, WorkspaceId, WorkspaceStatus};
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::StoreError;
use crate::db::{Pool, Sql, Tx};
use crate::types::{DbStatus, DbText, DbTime, DbUuid};

/// A workspace row. The platform's inbound secret is not part of it: secrets are read on
/// their own, by the code that needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    /// Its id.
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// Free-text role given to the agent.
    pub role: Option<String>,
    /// Tier number as stored (1 to 4 for rows this server wrote).
    pub tier: i32,
    /// Current status.
    pub status: WorkspaceStatus,
    /// The agent's A2A endpoint.
    pub url: Option<String>,
    /// The agent card sent at registration.
    pub agent_card: Option<Value>,
    /// Parent in the hierarchy.
    pub parent_id: Option<WorkspaceId>,
    /// Where traffic for this workspace is forwarded.
    pub forwarded_to: Option<WorkspaceId>,
    /// The bundle this workspace was imported from.
    pub source_bundle_id: Option<String>,
    /// Push or poll delivery of A2A messages.
    pub delivery_mode: DeliveryMode,
    /// Last heartbeat received.
    pub last_heartbeat_at: Option<OffsetDateTime>,
    /// Error rate of the last heartbeat.
    pub last_error_rate: f64,
    /// Last error sample, or the reason provisioning failed.
    pub last_sample_error: Option<String>,
    /// Tasks in progress by the last heartbeat.
    pub active_tasks: i32,
    /// Agent uptime by the last heartbeat.
    pub uptime_seconds: i32,
    /// What the agent said it is doing.
    pub current_task: Option<String>,
    /// Last outbound A2A call made by this workspace.
    pub last_outbound_at: Option<OffsetDateTime>,
    /// Memory namespace, `workspace:<id>`.
    pub awareness_namespace: Option<String>,
    /// Runtime name as stored.
    pub runtime: String,
    /// Host directory mounted at `/workspace`.
    pub workspace_dir: Option<String>,
    /// Access mode of that directory.
    pub workspace_access: WorkspaceAccess,
    /// How many tasks the agent accepts at once.
    pub max_concurrent_tasks: i32,
    /// The backend's instance id (EC2).
    pub instance_id: Option<String>,
    /// The image digest the workspace runs.
    pub runtime_image_digest: Option<String>,
    /// Monthly budget in USD cents; `None` is unlimited.
    pub budget_limit: Option<i64>,
    /// Spend this month in USD cents.
    pub monthly_spend: i64,
    /// Idle minutes before hibernation; `None` disables it.
    pub hibernation_idle_minutes: Option<i32>,
    /// When the row was created.
    pub created_at: OffsetDateTime,
    /// When the row last changed.
    pub updated_at: OffsetDateTime,
}

/// What a new workspace is made of. The store assigns `status = provisioning`.
#[derive(Debug, Clone)]
pub struct NewWorkspace {
    /// Display name (validated by the caller with `molecule_domain::validation`).
    pub name: String,
    /// Role, `None` for none.
    pub role: Option<String>,
    /// Tier.
    pub tier: Tier,
    /// Runtime.
    pub runtime: Runtime,
    /// Parent; must exist and not be removed.
    pub parent_id: Option<WorkspaceId>,
    /// Host directory.
    pub workspace_dir: Option<String>,
    /// Host directory access mode.
    pub workspace_access: WorkspaceAccess,
    /// Delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Monthly budget in cents.
    pub budget_limit: Option<i64>,
    /// Concurrent task limit (at least 1).
    pub max_concurrent_tasks: i32,
    /// Idle minutes before hibernation.
    pub hibernation_idle_minutes: Option<i32>,
}

impl NewWorkspace {
    /// A workspace with this name and every other field at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: None,
            tier: Tier::DEFAULT,
            runtime: Runtime::default_runtime(),
            parent_id: None,
            workspace_dir: None,
            workspace_access: WorkspaceAccess::None,
            delivery_mode: DeliveryMode::Push,
            budget_limit: None,
            max_concurrent_tasks: 1,
            hibernation_idle_minutes: None,
        }
    }
}

/// Changes to a workspace, applied together or not at all. `None` leaves a field as it is;
/// `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceUpdate {
    /// New name.
    pub name: Option<String>,
    /// New role, or cleared.
    pub role: Option<Option<String>>,
    /// New tier.
    pub tier: Option<Tier>,
    /// New runtime.
    pub runtime: Option<Runtime>,
    /// New parent, or made a root. Refused if it would create a cycle.
    pub parent_id: Option<Option<WorkspaceId>>,
    /// New host directory, or cleared.
    pub workspace_dir: Option<Option<String>>,
    /// New host directory access mode.
    pub workspace_access: Option<WorkspaceAccess>,
    /// New delivery mode.
    pub delivery_mode: Option<DeliveryMode>,
    /// New budget, or unlimited.
    pub budget_limit: Option<Option<i64>>,
    /// New concurrent task limit.
    pub max_concurrent_tasks: Option<i32>,
    /// New hibernation idle minutes, or disabled.
    pub hibernation_idle_minutes: Option<Option<i32>>,
}

/// A status change that was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status before.
    pub from: WorkspaceStatus,
    /// The status after.
    pub to: WorkspaceStatus,
}

const COLUMNS: &str = "id, name, role, tier, status, url, agent_card, parent_id, forwarded_to, \
    source_bundle_id, delivery_mode, last_heartbeat_at, last_error_rate, last_sample_error, \
    active_tasks, uptime_seconds, current_task, last_outbound_at, awareness_namespace, runtime, \
    workspace_dir, workspace_access, max_concurrent_tasks, instance_id, runtime_image_digest, \
    budget_limit, monthly_spend, hibernation_idle_minutes, created_at, updated_at";

/// The columns as decoded from either backend. Nullable where the reference schema is.
#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    name: String,
    role: Option<String>,
    tier: Option<i32>,
    status: Option<DbStatus>,
    url: Option<String>,
    agent_card: Option<Json<Value>>,
    parent_id: Option<DbUuid>,
    forwarded_to: Option<DbUuid>,
    source_bundle_id: Option<String>,
    delivery_mode: DbText<DeliveryMode>,
    last_heartbeat_at: Option<DbTime>,
    last_error_rate: Option<f64>,
    last_sample_error: Option<String>,
    active_tasks: Option<i32>,
    uptime_seconds: Option<i32>,
    current_task: Option<String>,
    last_outbound_at: Option<DbTime>,
    awareness_namespace: Option<String>,
    runtime: Option<String>,
    workspace_dir: Option<String>,
    workspace_access: DbText<WorkspaceAccess>,
    max_concurrent_tasks: i32,
    instance_id: Option<String>,
    runtime_image_digest: Option<String>,
    budget_limit: Option<i64>,
    monthly_spend: i64,
    hibernation_idle_minutes: Option<i32>,
    created_at: Option<DbTime>,
    updated_at: Option<DbTime>,
}

impl From<Row> for Workspace {
    fn from(r: Row) -> Self {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        Workspace {
            id: r.id.into(),
            name: r.name,
            role: r.role,
            tier: r.tier.unwrap_or(1),
            // The reference column is nullable; its default is provisioning.
            status: r.status.map_or(WorkspaceStatus::Provisioning, |s| s.0),
            url: r.url,
            agent_card: r.agent_card.map(|j| j.0),
            parent_id: r.parent_id.map(Into::into),
            forwarded_to: r.forwarded_to.map(Into::into),
            source_bundle_id: r.source_bundle_id,
            delivery_mode: r.delivery_mode.0,
            last_heartbeat_at: r.last_heartbeat_at.map(|t| t.0),
            last_error_rate: r.last_error_rate.unwrap_or(0.0),
            last_sample_error: r.last_sample_error,
            active_tasks: r.active_tasks.unwrap_or(0),
            uptime_seconds: r.uptime_seconds.unwrap_or(0),
            current_task: r.current_task,
            last_outbound_at: r.last_outbound_at.map(|t| t.0),
            awareness_namespace: r.awareness_namespace,
            runtime: r.runtime.unwrap_or_else(|| Runtime::DEFAULT.to_owned()),
            workspace_dir: r.workspace_dir,
            workspace_access: r.workspace_access.0,
            max_concurrent_tasks: r.max_concurrent_tasks,
            instance_id: r.instance_id,
            runtime_image_digest: r.runtime_image_digest,
            budget_limit: r.budget_limit,
            monthly_spend: r.monthly_spend,
            hibernation_idle_minutes: r.hibernation_idle_minutes,
            created_at: r.created_at.map_or(epoch, |t| t.0),
            updated_at: r.updated_at.map_or(epoch, |t| t.0),
        }
    }
}

/// How deep the parent walk of the cycle check may go before it gives up and refuses.
const MAX_DEPTH: i64 = 10_000;

/// Workspaces in the database.
#[derive(Debug, Clone, Copy)]
pub struct Workspaces<'a> {
    db: &'a Pool,
}

impl<'a> Workspaces<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    pub(crate) fn pool(&self) -> &'a Pool {
        self.db
    }

    /// Inserts a workspace in `provisioning` and returns the stored row.
    pub async fn create(&self, new: NewWorkspace) -> Result<Workspace, StoreError> {
        let id = WorkspaceId::new();
        let now = DbTime::now();
        let mut tx = self.db.begin().await?;
        if let Some(parent) = new.parent_id
            && !is_live(&mut tx, parent).await?
        {
            return Err(StoreError::ParentNotFound);
        }
        let insert = Sql::same(
            "INSERT INTO workspaces (id, name, role, tier, status, runtime, parent_id, \
             workspace_dir, workspace_access, delivery_mode, budget_limit, max_concurrent_tasks, \
             hibernation_idle_minutes, awareness_namespace, monthly_spend, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, $15, $15)",
        );
        db_query!(
            tx.exec(), query, insert,
            DbUuid::from(id),
            new.name,
            new.role.filter(|r| !r.is_empty()),
            new.tier.number(),
            DbStatus(WorkspaceStatus::Provisioning),
            new.runtime.as_str().to_owned(),
            new.parent_id.map(DbUuid::from),
            new.workspace_dir,
            DbText(new.workspace_access),
            DbText(new.delivery_mode),
            new.budget_limit,
            new.max_concurrent_tasks.max(1),
            new.hibernation_idle_minutes,
            format!("workspace:{id}"),
            now;
            execute
        )?;
        let row = select_one(&mut tx, id, false)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(row)
    }

    /// The workspace with this id, whatever its status (removed included).
    pub async fn get(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        let sql = Sql::same("SELECT __COLUMNS__ FROM workspaces WHERE id = $1")
            .replace("__COLUMNS__", COLUMNS);
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(id); fetch_optional)?;
        Ok(row.map(Into::into))
    }

    /// Every workspace that is not removed, oldest first.
    pub async fn list(&self) -> Result<Vec<Workspace>, StoreError> {
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM workspaces \
             WHERE status IS NULL OR status <> 'removed' ORDER BY created_at, id",
        )
        .replace("__COLUMNS__", COLUMNS);
        let rows: Vec<Row> = db_query!(self.db.exec(), query_as::<Row>, sql; fetch_all)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Applies every change in one transaction and returns the updated row. A removed
    /// workspace is not found; a parent that is missing, removed, the workspace itself or one
    /// of its descendants is refused and nothing is written.
    pub async fn update(
        &self,
        id: WorkspaceId,
        changes: WorkspaceUpdate,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.db.begin().await?;
        let mut ws = select_one(&mut tx, id, true)
            .await?
            .filter(|w| !w.status.is_removed())
            .ok_or(StoreError::NotFound)?;
        if let Some(Some(parent)) = changes.parent_id {
            if parent == id {
                return Err(StoreError::ParentCycle);
            }
            if !is_live(&mut tx, parent).await? {
                return Err(StoreError::ParentNotFound);
            }
            if has_ancestor(&mut tx, parent, id).await? {
                return Err(StoreError::ParentCycle);
            }
        }
        apply(&mut ws, changes);
        let now = DbTime::now();
        let update = Sql::same(
            "UPDATE workspaces SET name = $2, role = $3, tier = $4, runtime = $5, \
             parent_id = $6, workspace_dir = $7, workspace_access = $8, delivery_mode = $9, \
             budget_limit = $10, max_concurrent_tasks = $11, hibernation_idle_minutes = $12, \
             updated_at = $13 WHERE id = $1",
        );
        db_query!(
            tx.exec(), query, update,
            DbUuid::from(id),
            ws.name,
            ws.role,
            ws.tier,
            ws.runtime,
            ws.parent_id.map(DbUuid::from),
            ws.workspace_dir,
            DbText(ws.workspace_access),
            DbText(ws.delivery_mode),
            ws.budget_limit,
            ws.max_concurrent_tasks,
            ws.hibernation_idle_minutes,
            now;
            execute
        )?;
        let row = select_one(&mut tx, id, false)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Moves a workspace to `to` if the transition table allows it from its current status
    /// and `expect` (when given) accepts the current status. The check and the write happen
    /// under one row lock, so concurrent transitions serialise.
    pub async fn transition(
        &self,
        id: WorkspaceId,
        to: WorkspaceStatus,
        expect: Option<&[WorkspaceStatus]>,
    ) -> Result<Transition, StoreError> {
        let mut tx = self.db.begin().await?;
        let from = select_one(&mut tx, id, true)
            .await?
            .ok_or(StoreError::NotFound)?
            .status;
        if let Some(expected) = expect
            && !expected.contains(&from)
        {
            return Err(StoreError::UnexpectedStatus { current: from });
        }
        from.check_transition(to)?;
        let update = Sql::same("UPDATE workspaces SET status = $2, updated_at = $3 WHERE id = $1");
        db_query!(
            tx.exec(), query, update,
            DbUuid::from(id),
            DbStatus(to),
            DbTime::now();
            execute
        )?;
        tx.commit().await?;
        Ok(Transition { from, to })
    }
}

fn apply(ws: &mut Workspace, c: WorkspaceUpdate) {
    if let Some(v) = c.name {
        ws.name = v;
    }
    if let Some(v) = c.role {
        ws.role = v.filter(|r| !r.is_empty());
    }
    if let Some(v) = c.tier {
        ws.tier = v.number();
    }
    if let Some(v) = c.runtime {
        ws.runtime = v.as_str().to_owned();
    }
    if let Some(v) = c.parent_id {
        ws.parent_id = v;
    }
    if let Some(v) = c.workspace_dir {
        ws.workspace_dir = v.filter(|d| !d.is_empty());
    }
    if let Some(v) = c.workspace_access {
        ws.workspace_access = v;
    }
    if let Some(v) = c.delivery_mode {
        ws.delivery_mode = v;
    }
    if let Some(v) = c.budget_limit {
        ws.budget_limit = v;
    }
    if let Some(v) = c.max_concurrent_tasks {
        ws.max_concurrent_tasks = v.max(1);
    }
    if let Some(v) = c.hibernation_idle_minutes {
        ws.hibernation_idle_minutes = v;
    }
}

/// Reads one row inside a transaction; with `lock`, PostgreSQL locks it for update (SQLite
/// transactions already hold the write lock).
async fn select_one(
    tx: &mut Tx,
    id: WorkspaceId,
    lock: bool,
) -> Result<Option<Workspace>, StoreError> {
    let sql = if lock {
        Sql::split(
            "SELECT __COLUMNS__ FROM workspaces WHERE id = $1 FOR UPDATE",
            "SELECT __COLUMNS__ FROM workspaces WHERE id = $1",
        )
    } else {
        Sql::same("SELECT __COLUMNS__ FROM workspaces WHERE id = $1")
    }
    .replace("__COLUMNS__", COLUMNS);
    let row: Option<Row> =
        db_query!(tx.exec(), query_as::<Row>, sql, DbUuid::from(id); fetch_optional)?;
    Ok(row.map(Into::into))
}

/// Whether a workspace exists and is not removed.
async fn is_live(tx: &mut Tx, id: WorkspaceId) -> Result<bool, StoreError> {
    let sql = Sql::same(
        "SELECT COUNT(*) FROM workspaces WHERE id = $1 AND (status IS NULL OR status <> 'removed')",
    );
    let n: i64 = db_query!(tx.exec(), query_scalar::<i64>, sql, DbUuid::from(id); fetch_one)?;
    Ok(n > 0)
}

/// Whether `ancestor` is `start` or one of its ancestors (walking at most `MAX_DEPTH` levels;
/// a deeper chain is treated as a cycle).
async fn has_ancestor(
    tx: &mut Tx,
    start: WorkspaceId,
    ancestor: WorkspaceId,
) -> Result<bool, StoreError> {
    let sql = Sql::same(
        "WITH RECURSIVE chain(id, parent_id, depth) AS ( \
           SELECT id, parent_id, 0 FROM workspaces WHERE id = $1 \
           UNION ALL \
           SELECT w.id, w.parent_id, c.depth + 1 FROM workspaces w \
             JOIN chain c ON w.id = c.parent_id WHERE c.depth < $3 \
         ) \
         SELECT COUNT(*) FROM chain WHERE id = $2 OR depth >= $3",
    );
    let n: i64 = db_query!(
        tx.exec(), query_scalar::<i64>, sql,
        DbUuid::from(start),
        DbUuid::from(ancestor),
        MAX_DEPTH;
        fetch_one
    )?;
    Ok(n > 0)
}
