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
    /// When the workspace last did work (a task in progress, an A2A message).
    pub last_activity_at: Option<OffsetDateTime>,
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
    /// New canvas position.
    pub position: Option<(f64, f64)>,
    /// New collapsed flag of the canvas node.
    pub collapsed: Option<bool>,
}

/// A status change that was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status before.
    pub from: WorkspaceStatus,
    /// The status after.
    pub to: WorkspaceStatus,
}

pub(crate) const COLUMNS: &str = "id, name, role, tier, status, url, agent_card, parent_id, forwarded_to, \
    source_bundle_id, delivery_mode, last_heartbeat_at, last_error_rate, last_sample_error, \
    active_tasks, uptime_seconds, current_task, last_outbound_at, last_activity_at, \
    awareness_namespace, runtime, \
    workspace_dir, workspace_access, max_concurrent_tasks, instance_id, runtime_image_digest, \
    budget_limit, monthly_spend, hibernation_idle_minutes, created_at, updated_at";

/// The columns as decoded from either backend. Nullable where the reference schema is.
#[derive(sqlx::FromRow)]
pub(crate) struct Row {
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
    last_activity_at: Option<DbTime>,
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
            last_activity_at: r.last_activity_at.map(|t| t.0),
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
    pub(crate) db: &'a Pool,
    key: Option<&'a crate::SecretKey>,
}

impl<'a> Workspaces<'a> {
    pub(crate) fn new(db: &'a Pool, key: Option<&'a crate::SecretKey>) -> Self {
        Self { db, key }
    }

    pub(crate) fn pool(&self) -> &'a Pool {
        self.db
    }

    /// Inserts a workspace in `provisioning` and returns the stored row.
    pub async fn create(&self, new: NewWorkspace) -> Result<Workspace, StoreError> {
        self.create_with_secrets(new, &[]).await
    }

    /// Inserts a workspace in `provisioning` together with its secrets (encrypted when a key
    /// is loaded), in one transaction: if a secret cannot be encrypted or saved
    /// ([`StoreError::SecretWrite`]), nothing is created.
    pub async fn create_with_secrets(
        &self,
        new: NewWorkspace,
        secrets: &[(String, crate::Secret)],
    ) -> Result<Workspace, StoreError> {
        self.insert(WorkspaceId::new(), new, secrets).await
    }

    /// Inserts a workspace in `provisioning` under an id the caller chose (dev-mode
    /// registration of an agent the server has never seen). An existing row with that id,
    /// removed or not, is [`StoreError::Duplicate`] and nothing changes.
    pub async fn create_with_id(
        &self,
        id: WorkspaceId,
        new: NewWorkspace,
    ) -> Result<Workspace, StoreError> {
        self.insert(id, new, &[]).await
    }

    async fn insert(
        &self,
        id: WorkspaceId,
        new: NewWorkspace,
        secrets: &[(String, crate::Secret)],
    ) -> Result<Workspace, StoreError> {
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
        )
        .map_err(StoreError::from_write)?;
        crate::secrets::upsert_all_in(&mut tx, self.key, id, secrets).await?;
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
        let layout = (changes.position, changes.collapsed);
        apply(&mut ws, changes);
        if layout.0.is_some() || layout.1.is_some() {
            db_query!(
                tx.exec(), query, crate::layouts::UPSERT,
                DbUuid::from(id),
                layout.0.map(|p| p.0),
                layout.0.map(|p| p.1),
                layout.1;
                execute
            )?;
        }
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
        self.transition_with(id, to, expect, &StatusChange::default())
            .await
    }

    /// [`Workspaces::transition`] that also writes the columns a status change carries (the
    /// URL, the failure reason) in the same statement.
    pub async fn transition_with(
        &self,
        id: WorkspaceId,
        to: WorkspaceStatus,
        expect: Option<&[WorkspaceStatus]>,
        change: &StatusChange,
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
        let update = Sql::same(
            "UPDATE workspaces SET status = $2, updated_at = $3, \
             url = CASE WHEN $4 THEN $5 ELSE url END, \
             last_sample_error = CASE WHEN $6 THEN $7 ELSE last_sample_error END \
             WHERE id = $1",
        );
        db_query!(
            tx.exec(), query, update,
            DbUuid::from(id),
            DbStatus(to),
            DbTime::now(),
            change.url.is_some(),
            change.url.clone().flatten(),
            change.last_sample_error.is_some(),
            change.last_sample_error.clone();
            execute
        )?;
        tx.commit().await?;
        Ok(Transition { from, to })
    }

    /// The live (not removed) descendants of a workspace, parents before children.
    pub async fn descendants(&self, id: WorkspaceId) -> Result<Vec<Workspace>, StoreError> {
        let sql = Sql::same(
            "WITH RECURSIVE sub(id, depth) AS ( \
               SELECT id, 0 FROM workspaces WHERE parent_id = $1 \
                 AND (status IS NULL OR status <> 'removed') \
               UNION ALL \
               SELECT w.id, s.depth + 1 FROM workspaces w JOIN sub s ON w.parent_id = s.id \
               WHERE (w.status IS NULL OR w.status <> 'removed') AND s.depth < $2 \
             ) \
             SELECT __COLUMNS__ FROM workspaces WHERE id IN (SELECT id FROM sub) \
             ORDER BY created_at, id",
        )
        .replace("__COLUMNS__", COLUMNS);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(id), MAX_DEPTH;
            fetch_all
        )?;
        let mut found: Vec<Workspace> = rows.into_iter().map(Into::into).collect();
        order_parents_first(id, &mut found);
        Ok(found)
    }

    /// The live direct children of a workspace.
    pub async fn children(&self, id: WorkspaceId) -> Result<Vec<Workspace>, StoreError> {
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM workspaces WHERE parent_id = $1 \
             AND (status IS NULL OR status <> 'removed') ORDER BY created_at, id",
        )
        .replace("__COLUMNS__", COLUMNS);
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(id); fetch_all)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Marks every listed workspace `removed`, revokes all their tokens and drops their canvas
    /// layouts, in one transaction. Returns the ids that were not removed before.
    pub async fn remove_all(&self, ids: &[WorkspaceId]) -> Result<Vec<WorkspaceId>, StoreError> {
        let mut tx = self.db.begin().await?;
        let now = DbTime::now();
        let mut removed = Vec::new();
        for id in ids {
            // The guard is the transition table's list of statuses `removed` may follow.
            let mark = Sql::same(
                "UPDATE workspaces SET status = $2, url = NULL, updated_at = $3 \
                 WHERE id = $1 AND (status IS NULL OR status IN (__SOURCES__))",
            )
            .replace("__SOURCES__", &sources_sql(WorkspaceStatus::Removed));
            let n = db_query!(
                tx.exec(), query, mark,
                DbUuid::from(*id), DbStatus(WorkspaceStatus::Removed), now;
                execute
            )?;
            if n > 0 {
                removed.push(*id);
            }
            let revoke = Sql::same(
                "UPDATE workspace_auth_tokens SET revoked_at = $2 \
                 WHERE workspace_id = $1 AND revoked_at IS NULL",
            );
            db_query!(tx.exec(), query, revoke, DbUuid::from(*id), now; execute)?;
            let layout = Sql::same("DELETE FROM canvas_layouts WHERE workspace_id = $1");
            db_query!(tx.exec(), query, layout, DbUuid::from(*id); execute)?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Deletes the rows of the listed workspaces and everything that hangs off them, and
    /// detaches other rows that point at them, in one transaction.
    pub async fn purge(&self, ids: &[WorkspaceId]) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        for id in ids {
            for sql in [
                "DELETE FROM workspace_auth_tokens WHERE workspace_id = $1",
                "DELETE FROM canvas_layouts WHERE workspace_id = $1",
                "DELETE FROM workspace_secrets WHERE workspace_id = $1",
                // No cascade on agent_memories (as in the reference).
                "DELETE FROM agent_memories WHERE workspace_id = $1",
                "UPDATE workspaces SET parent_id = NULL WHERE parent_id = $1",
                "UPDATE workspaces SET forwarded_to = NULL WHERE forwarded_to = $1",
            ] {
                db_query!(tx.exec(), query, Sql::same(sql), DbUuid::from(*id); execute)?;
            }
        }
        for id in ids {
            let sql = Sql::same("DELETE FROM workspaces WHERE id = $1");
            db_query!(tx.exec(), query, sql, DbUuid::from(*id); execute)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets the agent URL (e.g. the one a backend reported at start).
    pub async fn set_url(&self, id: WorkspaceId, url: Option<&str>) -> Result<(), StoreError> {
        let sql = Sql::same("UPDATE workspaces SET url = $2, updated_at = $3 WHERE id = $1");
        db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(id), url.map(str::to_owned), DbTime::now();
            execute
        )?;
        Ok(())
    }

    /// Sets the backend's instance id.
    pub async fn set_instance_id(
        &self,
        id: WorkspaceId,
        instance_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let sql =
            Sql::same("UPDATE workspaces SET instance_id = $2, updated_at = $3 WHERE id = $1");
        db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(id), instance_id.map(str::to_owned), DbTime::now();
            execute
        )?;
        Ok(())
    }

    /// Sets (or clears) the monthly budget of a live workspace; `false` if there is none.
    pub async fn set_budget_limit(
        &self,
        id: WorkspaceId,
        limit: Option<i64>,
    ) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE workspaces SET budget_limit = $2, updated_at = $3 \
             WHERE id = $1 AND (status IS NULL OR status <> 'removed')",
        );
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(id), limit, DbTime::now();
            execute
        )?;
        Ok(n > 0)
    }
}

/// Columns written together with a status change.
#[derive(Debug, Clone, Default)]
pub struct StatusChange {
    /// `Some(url)` sets the URL (`Some(None)` clears it); `None` leaves it.
    pub url: Option<Option<String>>,
    /// `Some(reason)` sets `last_sample_error`.
    pub last_sample_error: Option<String>,
}

impl StatusChange {
    /// Clears the URL (the agent is gone or going).
    pub fn clear_url() -> Self {
        Self {
            url: Some(None),
            last_sample_error: None,
        }
    }

    /// Records why the workspace failed.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            url: None,
            last_sample_error: Some(reason.into()),
        }
    }
}

/// The statuses `to` may be entered from, as an SQL list of literals (built only from the
/// domain's constant wire strings, never from input).
pub(crate) fn sources_sql(to: WorkspaceStatus) -> String {
    WorkspaceStatus::allowed_sources(to)
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sorts descendants so that every parent comes before its children (breadth-first from the
/// root), keeping creation order among siblings.
fn order_parents_first(root: WorkspaceId, found: &mut Vec<Workspace>) {
    let mut ordered = Vec::with_capacity(found.len());
    let mut frontier = vec![root];
    while !frontier.is_empty() {
        let (level, rest): (Vec<Workspace>, Vec<Workspace>) = std::mem::take(found)
            .into_iter()
            .partition(|w| w.parent_id.is_some_and(|p| frontier.contains(&p)));
        *found = rest;
        frontier = level.iter().map(|w| w.id).collect();
        ordered.extend(level);
    }
    ordered.append(found);
    *found = ordered;
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
pub(crate) async fn select_one(
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
