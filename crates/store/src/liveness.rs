//! What agents report about themselves: registration, heartbeats and agent cards, and the
//! queries of the sweepers that watch them.

use molecule_domain::{DeliveryMode, WorkspaceId, WorkspaceStatus};
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;

use std::sync::Arc;

use crate::StoreError;
use crate::db::Sql;
use crate::types::{DbText, DbTime, DbUuid};
use crate::workspaces::{
    COLUMNS, Heartbeat, Routing, Row, Workspace, Workspaces, overlay, select_live,
};

impl Workspaces<'_> {
    /// Writes a heartbeat into a live workspace and returns the row as it was before, or
    /// `None` if there is no live workspace with this id. The row comes from the registry
    /// cache and the write is coalesced by the group-commit writer (the latest heartbeat of
    /// a workspace per flush is written); the cache shows it at once.
    pub async fn record_heartbeat(
        &self,
        id: WorkspaceId,
        hb: &Heartbeat,
    ) -> Result<Option<Arc<Routing>>, StoreError> {
        let Some(before) = self.routing(id).await? else {
            return Ok(None);
        };
        if before.workspace.status.is_removed() {
            return Ok(None);
        }
        let at = OffsetDateTime::now_utc();
        self.hot.behind.heartbeat(id, hb.clone());
        self.hot
            .registry
            .update_workspace(id, |ws| overlay(ws, hb, at));
        Ok(Some(before))
    }

    /// Records a registration (URL, agent card, delivery mode, a heartbeat) on a live
    /// workspace and returns the row as it was before; `None` if there is no live workspace.
    /// Registration never creates a workspace.
    pub async fn record_registration(
        &self,
        id: WorkspaceId,
        url: Option<&str>,
        agent_card: &Value,
        delivery_mode: DeliveryMode,
    ) -> Result<Option<Workspace>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some(before) = select_live(&mut tx, id).await? else {
            return Ok(None);
        };
        let sql = Sql::same(
            "UPDATE workspaces SET url = $2, agent_card = $3, delivery_mode = $4, \
             last_heartbeat_at = $5, updated_at = $5 WHERE id = $1",
        );
        db_query!(
            tx.exec(), query, sql,
            DbUuid::from(id),
            url.map(str::to_owned),
            Json(agent_card),
            DbText(delivery_mode),
            DbTime::now();
            execute
        )?;
        tx.commit().await?;
        self.changed(id);
        Ok(Some(before))
    }

    /// Replaces the agent card; `false` if there is no such workspace.
    pub async fn set_agent_card(&self, id: WorkspaceId, card: &Value) -> Result<bool, StoreError> {
        let sql = Sql::same("UPDATE workspaces SET agent_card = $2, updated_at = $3 WHERE id = $1");
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid::from(id), Json(card), DbTime::now();
            execute
        )?;
        self.changed(id);
        Ok(n > 0)
    }

    /// Workspaces in one of `statuses` whose last sign of life (heartbeat, else the last row
    /// change) is older than `cutoff`.
    pub async fn silent_since(
        &self,
        statuses: &[WorkspaceStatus],
        cutoff: OffsetDateTime,
    ) -> Result<Vec<Workspace>, StoreError> {
        self.hot.behind.barrier().await;
        let list = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM workspaces WHERE status IN (__LIST__) \
             AND COALESCE(last_heartbeat_at, updated_at) < $1 ORDER BY created_at, id",
        )
        .replace("__COLUMNS__", COLUMNS)
        .replace("__LIST__", if list.is_empty() { "NULL" } else { &list });
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbTime(cutoff); fetch_all)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Workspaces in one of `statuses`, oldest first.
    pub async fn with_status(
        &self,
        statuses: &[WorkspaceStatus],
    ) -> Result<Vec<Workspace>, StoreError> {
        self.silent_since(
            statuses,
            OffsetDateTime::now_utc() + time::Duration::days(36_500),
        )
        .await
    }

    /// Records that a workspace did work now (an A2A message to or from it).
    /// Written by the group-commit writer.
    pub fn touch_activity(&self, id: WorkspaceId) {
        self.hot.behind.touch_activity(id);
    }

    /// Records that a workspace just sent an A2A message (`last_outbound_at`).
    /// Written by the group-commit writer.
    pub fn touch_outbound(&self, id: WorkspaceId) {
        self.hot.behind.touch_outbound(id);
    }

    /// Online or degraded workspaces with hibernation enabled, no task running, and no work
    /// (activity, else creation) for longer than their idle minutes at `now`.
    pub async fn idle_for_hibernation(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<Workspace>, StoreError> {
        let candidates = self
            .with_status(&[WorkspaceStatus::Online, WorkspaceStatus::Degraded])
            .await?;
        Ok(candidates
            .into_iter()
            .filter(|w| {
                let Some(minutes) = w.hibernation_idle_minutes.filter(|m| *m > 0) else {
                    return false;
                };
                let since = w.last_activity_at.unwrap_or(w.created_at);
                w.active_tasks == 0 && now - since >= time::Duration::minutes(i64::from(minutes))
            })
            .collect())
    }

    /// The platform's inbound secret of a workspace, if one was minted.
    pub async fn inbound_secret(&self, id: WorkspaceId) -> Result<Option<String>, StoreError> {
        let sql = Sql::same("SELECT platform_inbound_secret FROM workspaces WHERE id = $1");
        let v: Option<Option<String>> = db_query!(
            self.db.exec(), query_scalar::<Option<String>>, sql, DbUuid::from(id);
            fetch_optional
        )?;
        Ok(v.flatten().filter(|s| !s.is_empty()))
    }

    /// Stores a new inbound secret.
    pub async fn set_inbound_secret(
        &self,
        id: WorkspaceId,
        secret: &str,
    ) -> Result<(), StoreError> {
        let sql = Sql::same("UPDATE workspaces SET platform_inbound_secret = $2 WHERE id = $1");
        db_query!(self.db.exec(), query, sql, DbUuid::from(id), secret.to_owned(); execute)?;
        self.changed(id);
        Ok(())
    }
}
