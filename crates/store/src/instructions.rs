//! Platform instructions (`platform_instructions`, `observability.md` §1.16): rules an admin
//! writes for every workspace, a team, or one workspace, which agents read at boot.

use molecule_domain::{InstructionScope, WorkspaceId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbText, DbTime, DbUuid};

/// A new instruction (validated by the caller: lengths, target present when scoped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInstruction {
    /// Who it applies to.
    pub scope: InstructionScope,
    /// The team lead or workspace id for `team` / `workspace`; `None` for `global`.
    pub scope_target: Option<String>,
    /// Its heading.
    pub title: String,
    /// Its Markdown text.
    pub content: String,
    /// Higher first within a scope.
    pub priority: i32,
}

/// A change to an instruction: each field replaced when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstructionUpdate {
    /// New heading.
    pub title: Option<String>,
    /// New text.
    pub content: Option<String>,
    /// New priority.
    pub priority: Option<i32>,
    /// Turned on or off.
    pub enabled: Option<bool>,
}

/// A stored instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Its id.
    pub id: Uuid,
    /// Who it applies to.
    pub scope: InstructionScope,
    /// The team lead or workspace it targets.
    pub scope_target: Option<String>,
    /// Its heading.
    pub title: String,
    /// Its text.
    pub content: String,
    /// Its priority.
    pub priority: i32,
    /// Whether it applies.
    pub enabled: bool,
    /// Created.
    pub created_at: Option<OffsetDateTime>,
    /// Last changed.
    pub updated_at: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: DbUuid,
    scope: DbText<InstructionScope>,
    scope_target: Option<String>,
    title: String,
    content: String,
    priority: Option<i32>,
    enabled: Option<bool>,
    created_at: Option<DbTime>,
    updated_at: Option<DbTime>,
}

impl From<Row> for Instruction {
    fn from(r: Row) -> Self {
        Instruction {
            id: r.id.0,
            scope: r.scope.0,
            scope_target: r.scope_target,
            title: r.title,
            content: r.content,
            priority: r.priority.unwrap_or(0),
            enabled: r.enabled.unwrap_or(true),
            created_at: r.created_at.map(|t| t.0),
            updated_at: r.updated_at.map(|t| t.0),
        }
    }
}

const COLUMNS: &str =
    "id, scope, scope_target, title, content, priority, enabled, created_at, updated_at";

/// Scope groups in resolution order: global, then team, then workspace.
const SCOPE_ORDER: &str = "CASE scope WHEN 'global' THEN 0 WHEN 'team' THEN 1 ELSE 2 END";

/// The platform instructions.
#[derive(Debug, Clone, Copy)]
pub struct Instructions<'a> {
    db: &'a Pool,
}

impl<'a> Instructions<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Stores a new, enabled instruction; answers its id.
    pub async fn create(&self, new: &NewInstruction) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        let now = DbTime::now();
        let sql = Sql::same(
            "INSERT INTO platform_instructions (id, scope, scope_target, title, content, \
             priority, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        );
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), DbText(new.scope), new.scope_target.clone(), new.title.clone(),
            new.content.clone(), new.priority, true, now;
            execute
        )?;
        Ok(id)
    }

    /// Every instruction (of one scope when given), by scope, priority (highest first), age.
    pub async fn list(
        &self,
        scope: Option<InstructionScope>,
    ) -> Result<Vec<Instruction>, StoreError> {
        let sql = Sql::same(
            "SELECT __C__ FROM platform_instructions WHERE ($1::text IS NULL OR scope = $1) \
             ORDER BY __O__, priority DESC, created_at, id",
        );
        let sql = Sql::built(
            sql.postgres()
                .replace("__C__", COLUMNS)
                .replace("__O__", SCOPE_ORDER),
            sql.sqlite()
                .replace("__C__", COLUMNS)
                .replace("__O__", SCOPE_ORDER)
                .replace("$1::text", "$1"),
        );
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, scope.map(DbText);
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The enabled instructions that apply to workspace `ws` (whose parent is `parent`) in
    /// resolution order: global, team (the team `ws` belongs to, led by its parent, and the
    /// team it leads), workspace; each by priority (highest first), then age.
    pub async fn for_workspace(
        &self,
        ws: WorkspaceId,
        parent: Option<WorkspaceId>,
    ) -> Result<Vec<Instruction>, StoreError> {
        let sql = Sql::same(
            "SELECT __C__ FROM platform_instructions WHERE enabled AND (scope = 'global' \
             OR (scope = 'team' AND (scope_target = $1 OR scope_target = $2)) \
             OR (scope = 'workspace' AND scope_target = $1)) \
             ORDER BY __O__, priority DESC, created_at, id",
        )
        .replace("__C__", COLUMNS)
        .replace("__O__", SCOPE_ORDER);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql,
            ws.to_string(), parent.map(|p| p.to_string());
            fetch_all
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Applies `update` to instruction `id`; whether it exists.
    pub async fn update(&self, id: Uuid, update: &InstructionUpdate) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE platform_instructions SET title = COALESCE($2, title), \
             content = COALESCE($3, content), priority = COALESCE($4, priority), \
             enabled = COALESCE($5, enabled), updated_at = $6 WHERE id = $1",
        );
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), update.title.clone(), update.content.clone(), update.priority,
            update.enabled, DbTime::now();
            execute
        )?;
        Ok(n > 0)
    }

    /// Deletes instruction `id`; whether it existed.
    pub async fn delete(&self, id: Uuid) -> Result<bool, StoreError> {
        let sql = Sql::same("DELETE FROM platform_instructions WHERE id = $1");
        Ok(db_query!(self.db.exec(), query, sql, DbUuid(id); execute)? > 0)
    }
}
