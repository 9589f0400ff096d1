//! The per-org plugin allowlist (`org_plugin_allowlist`, spec templates §1.6): the plugins an
//! org (a root workspace) lets its workspaces install. No rows means every plugin is allowed.

use molecule_domain::WorkspaceId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// One allowed plugin of an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPlugin {
    /// The plugin's name.
    pub plugin_name: String,
    /// Who allowed it.
    pub enabled_by: String,
    /// When.
    pub enabled_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct Row {
    plugin_name: String,
    enabled_by: String,
    enabled_at: DbTime,
}

/// The plugin allowlists of every org.
#[derive(Debug, Clone, Copy)]
pub struct PluginAllowlist<'a> {
    db: &'a Pool,
}

impl<'a> PluginAllowlist<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// The org's allowed plugins, by name.
    pub async fn list(&self, org: WorkspaceId) -> Result<Vec<AllowedPlugin>, StoreError> {
        let sql = Sql::same(
            "SELECT plugin_name, enabled_by, enabled_at FROM org_plugin_allowlist \
             WHERE org_id = $1 ORDER BY plugin_name",
        );
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(org); fetch_all)?;
        Ok(rows
            .into_iter()
            .map(|r| AllowedPlugin {
                plugin_name: r.plugin_name,
                enabled_by: r.enabled_by,
                enabled_at: r.enabled_at.0,
            })
            .collect())
    }

    /// Replaces the org's list with `names` (duplicates collapse) in one transaction; an
    /// empty list allows every plugin again.
    pub async fn replace(
        &self,
        org: WorkspaceId,
        names: &[String],
        enabled_by: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let delete = Sql::same("DELETE FROM org_plugin_allowlist WHERE org_id = $1");
        db_query!(tx.exec(), query, delete, DbUuid::from(org); execute)?;
        let insert = Sql::same(
            "INSERT INTO org_plugin_allowlist (id, org_id, plugin_name, enabled_by, enabled_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, plugin_name) DO NOTHING",
        );
        let now = DbTime::now();
        for name in names {
            db_query!(
                tx.exec(), query, insert,
                DbUuid(Uuid::new_v4()), DbUuid::from(org), name.clone(),
                enabled_by.to_owned(), now;
                execute
            )
            .map_err(StoreError::from_write)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether the org lets `name` be installed: it is listed, or the org lists nothing.
    pub async fn allows(&self, org: WorkspaceId, name: &str) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN plugin_name = $2 THEN 1 ELSE 0 END), 0) \
             FROM org_plugin_allowlist WHERE org_id = $1",
        );
        let (total, listed): (i64, i64) = db_query!(
            self.db.exec(), query_as::<(i64, i64)>, sql, DbUuid::from(org), name.to_owned();
            fetch_one
        )?;
        Ok(total == 0 || listed > 0)
    }
}
