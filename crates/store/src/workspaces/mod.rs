//! The workspaces repository: create, read, list, update in one transaction, the guarded
//! status transition, removal. The row and its Rust types are in `model`, the tree (children,
//! descendants, the cycle check) in `tree`.

mod model;
mod tree;

use molecule_domain::{WorkspaceId, WorkspaceStatus};

use std::sync::Arc;

use crate::db::{Pool, Sql, Tx};
use crate::types::{DbStatus, DbText, DbTime, DbUuid};
use crate::{Hot, StoreError};

use self::model::apply;
pub(crate) use self::model::overlay;
pub(crate) use self::model::{COLUMNS, Row};
pub use self::model::{
    Heartbeat, NewWorkspace, Routing, StatusChange, Transition, Workspace, WorkspaceUpdate,
};
use self::tree::has_ancestor;

/// Workspaces in the database.
#[derive(Debug, Clone, Copy)]
pub struct Workspaces<'a> {
    pub(crate) db: &'a Pool,
    key: Option<&'a crate::SecretKey>,
    pub(crate) hot: &'a Hot,
}

impl<'a> Workspaces<'a> {
    pub(crate) fn new(db: &'a Pool, key: Option<&'a crate::SecretKey>, hot: &'a Hot) -> Self {
        Self { db, key, hot }
    }

    /// Forgets the cached row and tokens of `id` after a committed change.
    pub(crate) fn changed(&self, id: WorkspaceId) {
        self.hot.registry.forget_workspace(id);
        self.hot.registry.forget_tokens_of(id);
    }

    /// The workspace as the hot paths read it (its row with pending heartbeats applied, and
    /// its inbound secret), from the registry cache; a miss reads the database once and keeps
    /// the answer. Fields no hot path reads (times, the agent card) may lag by the cache's
    /// TTL: API reads use [`Workspaces::get`].
    pub async fn routing(&self, id: WorkspaceId) -> Result<Option<Arc<Routing>>, StoreError> {
        if let Some(cached) = self.hot.registry.workspace(id) {
            return Ok(Some(cached));
        }
        let ticket = self.hot.registry.ticket();
        // A heartbeat not yet committed when the read begins may be committed by the time it
        // ends, or not: the newest one seen before or after the read is applied unless the
        // row already holds a later one.
        let before = self.hot.behind.pending_heartbeat(id);
        let Some(mut workspace) = self.get_now(id).await? else {
            return Ok(None);
        };
        let after = self.hot.behind.pending_heartbeat(id);
        let newest = [before, after]
            .into_iter()
            .flatten()
            .max_by_key(|(_, at)| *at);
        if let Some((hb, at)) = newest
            && workspace.last_heartbeat_at.is_none_or(|stored| stored < at)
        {
            overlay(&mut workspace, &hb, at);
        }
        let inbound_secret = self.inbound_secret(id).await?;
        let routing = Arc::new(Routing {
            workspace,
            inbound_secret,
        });
        if let Some(ticket) = ticket {
            self.hot
                .registry
                .fill_workspace(ticket, Arc::clone(&routing));
        }
        Ok(Some(routing))
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
    /// Waits for the pending writes queued before it (heartbeats, activity times).
    pub async fn get(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        self.hot.behind.barrier().await;
        self.get_now(id).await
    }

    /// The row as the database holds it now, without waiting for pending writes.
    async fn get_now(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        let sql = Sql::same("SELECT __COLUMNS__ FROM workspaces WHERE id = $1")
            .replace("__COLUMNS__", COLUMNS);
        let row: Option<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(id); fetch_optional)?;
        Ok(row.map(Into::into))
    }

    /// Every workspace that is not removed, oldest first.
    pub async fn list(&self) -> Result<Vec<Workspace>, StoreError> {
        self.hot.behind.barrier().await;
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
        let mut ws = select_live(&mut tx, id)
            .await?
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
        self.changed(id);
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
        self.changed(id);
        Ok(Transition { from, to })
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
            db_query!(tx.exec(), query, crate::tokens::REVOKE_ALL, DbUuid::from(*id), now; execute)?;
            let layout = Sql::same("DELETE FROM canvas_layouts WHERE workspace_id = $1");
            db_query!(tx.exec(), query, layout, DbUuid::from(*id); execute)?;
            // A removed workspace's schedules never fire again.
            let schedules = Sql::same(
                "UPDATE workspace_schedules SET enabled = false, updated_at = $2 \
                 WHERE workspace_id = $1 AND enabled",
            );
            db_query!(tx.exec(), query, schedules, DbUuid::from(*id), now; execute)?;
            // Nor do its chat channels poll or answer (spec §D28).
            let channels = Sql::same(
                "UPDATE workspace_channels SET enabled = false, updated_at = $2 \
                 WHERE workspace_id = $1 AND enabled",
            );
            db_query!(tx.exec(), query, channels, DbUuid::from(*id), now; execute)?;
        }
        tx.commit().await?;
        for id in ids {
            self.changed(*id);
        }
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
        // Other rows lost their parent: forget every cached row.
        self.hot.registry.forget_workspaces();
        for id in ids {
            self.changed(*id);
        }
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
        self.changed(id);
        Ok(())
    }

    /// Records the bundle a workspace was imported from (`POST /bundles/import`).
    pub async fn set_source_bundle_id(
        &self,
        id: WorkspaceId,
        bundle_id: &str,
    ) -> Result<(), StoreError> {
        let sql =
            Sql::same("UPDATE workspaces SET source_bundle_id = $2, updated_at = $3 WHERE id = $1");
        db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(id), bundle_id.to_owned(), DbTime::now();
            execute
        )?;
        self.changed(id);
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
        self.changed(id);
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
        self.changed(id);
        Ok(n > 0)
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

/// Reads a live (not removed) row inside a transaction, locked as by [`select_one`].
pub(crate) async fn select_live(
    tx: &mut Tx,
    id: WorkspaceId,
) -> Result<Option<Workspace>, StoreError> {
    Ok(select_one(tx, id, true)
        .await?
        .filter(|w| !w.status.is_removed()))
}

/// Whether a workspace exists and is not removed.
pub(crate) async fn is_live(tx: &mut Tx, id: WorkspaceId) -> Result<bool, StoreError> {
    let sql = Sql::same(
        "SELECT COUNT(*) FROM workspaces WHERE id = $1 AND (status IS NULL OR status <> 'removed')",
    );
    let n: i64 = db_query!(tx.exec(), query_scalar::<i64>, sql, DbUuid::from(id); fetch_one)?;
    Ok(n > 0)
}
