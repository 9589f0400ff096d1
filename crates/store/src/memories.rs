//! Scoped agent memories (`agent_memories`, `observability.md` §1.10): commit (always through
//! [`redact_secrets`] and the GLOBAL escape), recall by scope with ranked full-text search
//! (PostgreSQL `tsvector` + `websearch_to_tsquery`, SQLite FTS5 + `bm25`), delete by owner.
//! Export and import are in `memory_backup.rs`.

use molecule_domain::WorkspaceId;
use molecule_domain::memory::{self, MemoryScope};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::activity::search::like_pattern;
use crate::db::{Pool, Sql};
use crate::fts::fts5_query;
use crate::redact::redact_secrets;
use crate::types::{DbText, DbTime, DbUuid};

/// A memory to write. Its content is redacted (and escaped for GLOBAL) by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMemory {
    /// The owner.
    pub workspace_id: WorkspaceId,
    /// The text as the agent sent it.
    pub content: String,
    /// Who sees it.
    pub scope: MemoryScope,
    /// Its namespace (already validated, see `molecule_domain::memory::namespace`).
    pub namespace: String,
    /// When it was written; now when `None` (imports keep the original time).
    pub created_at: Option<OffsetDateTime>,
}

/// A stored memory; `content` as stored (redacted, GLOBAL escaped, not wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Its id.
    pub id: Uuid,
    /// The owner.
    pub workspace_id: WorkspaceId,
    /// The stored text.
    pub content: String,
    /// Its scope.
    pub scope: MemoryScope,
    /// Its namespace.
    pub namespace: String,
    /// When it was written.
    pub created_at: OffsetDateTime,
}

impl Memory {
    /// The content as every read path shows it (GLOBAL rows wrapped with their origin).
    pub fn read_content(&self) -> String {
        memory::read_view(
            self.scope,
            &self.id.to_string(),
            self.workspace_id,
            &self.content,
        )
    }
}

/// A written memory and the labels of the secrets redacted from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The stored row.
    pub memory: Memory,
    /// Which secret patterns matched (for the log; never the values).
    pub redacted: Vec<&'static str>,
}

/// What a recall reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecallFilter {
    /// `None`: the caller's own rows of any scope.
    pub scope: Option<MemoryScope>,
    /// Text to search for: full-text from two bytes on, a substring match for one byte.
    pub query: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// At most this many rows.
    pub limit: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: DbUuid,
    workspace_id: DbUuid,
    content: String,
    scope: DbText<MemoryScope>,
    namespace: String,
    created_at: DbTime,
}

impl From<Row> for Memory {
    fn from(r: Row) -> Self {
        Memory {
            id: r.id.0,
            workspace_id: r.workspace_id.into(),
            content: r.content,
            scope: r.scope.0,
            namespace: r.namespace,
            created_at: r.created_at.0,
        }
    }
}

pub(crate) const COLUMNS: &str =
    "m.id, m.workspace_id, m.content, m.scope, m.namespace, m.created_at";

/// Which rows a recall may see: `$1` is the caller, `$2` its team anchor (its parent, or
/// itself for a root).
fn visibility(scope: Option<MemoryScope>) -> &'static str {
    match scope {
        None => "m.workspace_id = $1",
        Some(MemoryScope::Local) => "m.workspace_id = $1 AND m.scope = 'LOCAL'",
        Some(MemoryScope::Team) => {
            "m.scope = 'TEAM' AND m.workspace_id IN (SELECT w.id FROM workspaces w \
             WHERE w.status <> 'removed' AND (w.id = $2 OR w.parent_id = $2))"
        }
        Some(MemoryScope::Global) => "m.scope = 'GLOBAL' AND $1 = $1",
    }
}

/// The scoped agent memories.
#[derive(Debug, Clone, Copy)]
pub struct Memories<'a> {
    db: &'a Pool,
}

impl<'a> Memories<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    pub(crate) fn pool(&self) -> &'a Pool {
        self.db
    }

    /// Writes a memory: its content redacted of secrets and, for GLOBAL, escaped. A workspace
    /// that does not exist is [`StoreError::NotFound`].
    pub async fn commit(&self, new: &NewMemory) -> Result<Committed, StoreError> {
        let redacted = redact_secrets(&new.content);
        let content = memory::escape_for_scope(new.scope, &redacted.text);
        let memory = Memory {
            id: Uuid::new_v4(),
            workspace_id: new.workspace_id,
            content,
            scope: new.scope,
            namespace: new.namespace.clone(),
            created_at: DbTime::at(new.created_at.unwrap_or_else(OffsetDateTime::now_utc)).0,
        };
        let sql = Sql::same(
            "INSERT INTO agent_memories \
             (id, workspace_id, content, scope, namespace, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(memory.id),
            DbUuid::from(memory.workspace_id),
            memory.content.clone(),
            DbText(memory.scope),
            memory.namespace.clone(),
            DbTime(memory.created_at),
            DbTime::now();
            execute
        )
        .map_err(StoreError::from_write)?;
        Ok(Committed {
            memory,
            redacted: redacted.labels,
        })
    }

    /// The memories `ws` (whose parent is `parent`) may see under `filter`, best first: ranked
    /// by relevance for a full-text query, else newest first. A full-text query that finds
    /// nothing (or has only stop words) is retried as a substring match.
    pub async fn recall(
        &self,
        ws: WorkspaceId,
        parent: Option<WorkspaceId>,
        filter: &RecallFilter,
    ) -> Result<Vec<Memory>, StoreError> {
        let query = filter.query.as_deref().filter(|q| !q.is_empty());
        if let Some(q) = query.filter(|q| q.len() >= 2) {
            let found = self.full_text(ws, parent, filter, q).await?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
        self.substring(ws, parent, filter, query).await
    }

    async fn full_text(
        &self,
        ws: WorkspaceId,
        parent: Option<WorkspaceId>,
        filter: &RecallFilter,
        q: &str,
    ) -> Result<Vec<Memory>, StoreError> {
        let vis = visibility(filter.scope);
        // SQLite: no searchable word means no full-text query at all.
        let lite_query = fts5_query(q);
        let pg = format!(
            "SELECT {COLUMNS} FROM agent_memories m, websearch_to_tsquery('english', $5) tsq \
             WHERE {vis} AND ($3::text IS NULL OR m.namespace = $3) AND m.content_tsv @@ tsq \
             ORDER BY ts_rank(m.content_tsv, tsq) DESC, m.created_at DESC, m.id DESC LIMIT $4"
        );
        let lite = format!(
            "SELECT {COLUMNS} FROM agent_memories_fts \
             JOIN agent_memories m ON m.seq = agent_memories_fts.rowid \
             WHERE agent_memories_fts MATCH $5 AND {vis} AND ($3 IS NULL OR m.namespace = $3) \
             ORDER BY agent_memories_fts.rank, m.created_at DESC, m.id DESC LIMIT $4"
        );
        let text = match (&self.db, &lite_query) {
            (crate::db::Db::Sqlite(_), None) => return Ok(Vec::new()),
            (crate::db::Db::Sqlite(_), Some(l)) => l.clone(),
            (crate::db::Db::Postgres(_), _) => q.to_owned(),
        };
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, Sql::built(pg, lite),
            DbUuid::from(ws),
            DbUuid::from(parent.unwrap_or(ws)),
            filter.namespace.clone(),
            filter.limit.max(0),
            text;
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn substring(
        &self,
        ws: WorkspaceId,
        parent: Option<WorkspaceId>,
        filter: &RecallFilter,
        q: Option<&str>,
    ) -> Result<Vec<Memory>, StoreError> {
        let vis = visibility(filter.scope);
        let build = |like: &str, ns_cast: &str| {
            format!(
                "SELECT {COLUMNS} FROM agent_memories m WHERE {vis} \
                 AND ($3{ns_cast} IS NULL OR m.namespace = $3) \
                 AND ($5{ns_cast} IS NULL OR m.content {like} $5 ESCAPE '\\') \
                 ORDER BY m.created_at DESC, m.id DESC LIMIT $4"
            )
        };
        let sql = Sql::built(build("ILIKE", "::text"), build("LIKE", ""));
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql,
            DbUuid::from(ws),
            DbUuid::from(parent.unwrap_or(ws)),
            filter.namespace.clone(),
            filter.limit.max(0),
            q.map(like_pattern);
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Seeds a new workspace's memories from a template (`(content, scope)` pairs), under
    /// the seeding rules: scope upper-cased (empty: LOCAL; unknown: skipped), empty content
    /// skipped, content cut to 100 000 bytes on a character boundary, GLOBAL only for a root,
    /// redacted like any commit. Answers how many were written.
    pub async fn seed(
        &self,
        ws: WorkspaceId,
        parent: Option<WorkspaceId>,
        namespace: &str,
        seeds: &[(String, String)],
    ) -> Result<u64, StoreError> {
        let mut written = 0;
        for (content, scope) in seeds {
            let Some(scope) = memory::seed_scope(scope) else {
                continue;
            };
            if content.trim().is_empty() || memory::check_write(scope, parent).is_err() {
                continue;
            }
            let content = memory::truncate_utf8(content, memory::MEMORY_CONTENT_MAX_BYTES);
            self.commit(&NewMemory {
                workspace_id: ws,
                content: content.to_owned(),
                scope,
                namespace: namespace.to_owned(),
                created_at: None,
            })
            .await?;
            written += 1;
        }
        Ok(written)
    }

    /// Deletes memory `id` if `ws` owns it (any scope); whether it did.
    pub async fn delete(&self, ws: WorkspaceId, id: Uuid) -> Result<bool, StoreError> {
        let sql = Sql::same("DELETE FROM agent_memories WHERE id = $1 AND workspace_id = $2");
        let n = db_query!(self.db.exec(), query, sql, DbUuid(id), DbUuid::from(ws); execute)?;
        Ok(n > 0)
    }

    /// The newest memories of `ws` (any scope), at most `limit`, whose content or scope
    /// contains `q` case-insensitively (every row when `q` is `None`): session search.
    pub async fn search_own(
        &self,
        ws: WorkspaceId,
        q: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Memory>, StoreError> {
        let build = |like: &str, cast: &str| {
            format!(
                "SELECT {COLUMNS} FROM agent_memories m WHERE m.workspace_id = $1 \
                 AND ($2{cast} IS NULL OR m.content {like} $2 ESCAPE '\\' \
                      OR m.scope {like} $2 ESCAPE '\\') \
                 ORDER BY m.created_at DESC, m.id DESC LIMIT $3"
            )
        };
        let sql = Sql::built(build("ILIKE", "::text"), build("LIKE", ""));
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql,
            DbUuid::from(ws),
            q.filter(|q| !q.is_empty()).map(like_pattern),
            limit.max(0);
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
