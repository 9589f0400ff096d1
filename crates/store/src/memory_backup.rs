//! Memory backup (`observability.md` §1.12): every agent memory out with its workspace's
//! name (secrets redacted), and back in by name, idempotently.

use molecule_domain::WorkspaceId;
use molecule_domain::memory::{self, MemoryScope};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::StoreError;
use crate::db::Sql;
use crate::memories::{Memories, NewMemory};
use crate::redact::redact_secrets;
use crate::types::{DbText, DbTime, DbUuid};

/// One exported memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedMemory {
    /// Its id.
    pub id: Uuid,
    /// Its content, redacted again on the way out.
    pub content: String,
    /// Its scope.
    pub scope: MemoryScope,
    /// Its namespace.
    pub namespace: String,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// Its workspace's name.
    pub workspace_name: Option<String>,
}

/// One memory to import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportEntry {
    /// The text (redacted before anything else).
    pub content: String,
    /// `LOCAL`, `TEAM` or `GLOBAL`.
    pub scope: String,
    /// Its namespace (`general` when empty).
    pub namespace: Option<String>,
    /// RFC 3339; now when empty.
    pub created_at: Option<String>,
    /// The workspace it goes to, by exact name.
    pub workspace_name: String,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows written.
    pub imported: u64,
    /// Entries with no such workspace, or already present.
    pub skipped: u64,
    /// Entries the memory rules refuse (scope, content, namespace, time, GLOBAL from a
    /// child) or that failed to be written.
    pub errors: u64,
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    id: DbUuid,
    content: String,
    scope: DbText<MemoryScope>,
    namespace: String,
    created_at: DbTime,
    workspace_name: Option<String>,
}

/// How an entry ends.
enum Outcome {
    Imported,
    Skipped,
    Refused,
}

impl Memories<'_> {
    /// Every memory, oldest first, with its workspace's name; contents redacted.
    pub async fn export(&self) -> Result<Vec<ExportedMemory>, StoreError> {
        let sql = Sql::same(
            "SELECT m.id, m.content, m.scope, m.namespace, m.created_at, w.name AS workspace_name \
             FROM agent_memories m LEFT JOIN workspaces w ON w.id = m.workspace_id \
             ORDER BY m.created_at, m.id",
        );
        let rows: Vec<ExportRow> =
            db_query!(self.pool().exec(), query_as::<ExportRow>, sql; fetch_all)?;
        Ok(rows
            .into_iter()
            .map(|r| ExportedMemory {
                id: r.id.0,
                content: redact_secrets(&r.content).text,
                scope: r.scope.0,
                namespace: r.namespace,
                created_at: r.created_at.0,
                workspace_name: r.workspace_name,
            })
            .collect())
    }

    /// Imports entries by workspace name (the oldest live workspace of that name) under the
    /// commit rules. An entry identical to a stored row (workspace, redacted content, scope) is
    /// skipped, so importing the same export twice writes nothing the second time.
    pub async fn import(&self, entries: &[ImportEntry]) -> ImportReport {
        let mut report = ImportReport::default();
        for entry in entries {
            match self.import_one(entry).await {
                Ok(Outcome::Imported) => report.imported += 1,
                Ok(Outcome::Skipped) => report.skipped += 1,
                Ok(Outcome::Refused) => report.errors += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "memory import: an entry failed");
                    report.errors += 1;
                }
            }
        }
        report
    }

    async fn import_one(&self, entry: &ImportEntry) -> Result<Outcome, StoreError> {
        let Some((ws, parent)) = self.workspace_named(&entry.workspace_name).await? else {
            return Ok(Outcome::Skipped);
        };
        let Ok(scope) = memory::parse_scope(&entry.scope) else {
            return Ok(Outcome::Refused);
        };
        let Ok(namespace) = memory::namespace(entry.namespace.as_deref()) else {
            return Ok(Outcome::Refused);
        };
        if memory::check_content(&entry.content).is_err()
            || memory::check_write(scope, parent).is_err()
        {
            return Ok(Outcome::Refused);
        }
        let created_at = match entry.created_at.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => match OffsetDateTime::parse(t, &Rfc3339) {
                Ok(t) => Some(t),
                Err(_) => return Ok(Outcome::Refused),
            },
        };
        let stored = memory::escape_for_scope(scope, &redact_secrets(&entry.content).text);
        let exists = Sql::same(
            "SELECT COUNT(*) FROM agent_memories \
             WHERE workspace_id = $1 AND content = $2 AND scope = $3",
        );
        let n: i64 = db_query!(
            self.pool().exec(), query_scalar::<i64>, exists,
            DbUuid::from(ws), stored, DbText(scope);
            fetch_one
        )?;
        if n > 0 {
            return Ok(Outcome::Skipped);
        }
        self.commit(&NewMemory {
            workspace_id: ws,
            content: entry.content.clone(),
            scope,
            namespace,
            created_at,
        })
        .await?;
        Ok(Outcome::Imported)
    }

    /// The oldest live workspace with this exact name, and its parent.
    async fn workspace_named(
        &self,
        name: &str,
    ) -> Result<Option<(WorkspaceId, Option<WorkspaceId>)>, StoreError> {
        let sql = Sql::same(
            "SELECT id, parent_id FROM workspaces WHERE name = $1 AND status <> 'removed' \
             ORDER BY created_at, id LIMIT 1",
        );
        let row: Option<(DbUuid, Option<DbUuid>)> = db_query!(
            self.pool().exec(), query_as::<(DbUuid, Option<DbUuid>)>, sql, name.to_owned();
            fetch_optional
        )?;
        Ok(row.map(|(id, parent)| (id.into(), parent.map(Into::into))))
    }
}
