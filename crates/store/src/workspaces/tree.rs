//! The workspace tree: the live children and descendants of a workspace, and the walk up
//! its parents that keeps the tree free of cycles.

use molecule_domain::WorkspaceId;

use super::{COLUMNS, Row, Workspace, Workspaces};
use crate::StoreError;
use crate::db::{Sql, Tx};
use crate::types::DbUuid;

/// How deep the parent walk of the cycle check may go before it gives up and refuses.
const MAX_DEPTH: i64 = 10_000;

/// The walk up from the workspace bound as `$1` through its parents: the rows
/// `(id, parent_id, depth)` of the CTE `chain`, the workspace itself at depth 0, at most
/// `max_depth` (an SQL expression) levels up.
pub(crate) fn ancestor_chain(max_depth: &str) -> String {
    format!(
        "WITH RECURSIVE chain(id, parent_id, depth) AS ( \
           SELECT id, parent_id, 0 FROM workspaces WHERE id = $1 \
           UNION ALL \
           SELECT w.id, w.parent_id, c.depth + 1 FROM workspaces w \
             JOIN chain c ON w.id = c.parent_id WHERE c.depth < {max_depth} \
         )"
    )
}

impl Workspaces<'_> {
    /// The live (not removed) descendants of a workspace, parents before children.
    pub async fn descendants(&self, id: WorkspaceId) -> Result<Vec<Workspace>, StoreError> {
        self.hot.behind.barrier().await;
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
        self.hot.behind.barrier().await;
        let sql = Sql::same(
            "SELECT __COLUMNS__ FROM workspaces WHERE parent_id = $1 \
             AND (status IS NULL OR status <> 'removed') ORDER BY created_at, id",
        )
        .replace("__COLUMNS__", COLUMNS);
        let rows: Vec<Row> =
            db_query!(self.db.exec(), query_as::<Row>, sql, DbUuid::from(id); fetch_all)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
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

/// Whether `ancestor` is `start` or one of its ancestors (walking at most `MAX_DEPTH` levels;
/// a deeper chain is treated as a cycle).
pub(super) async fn has_ancestor(
    tx: &mut Tx,
    start: WorkspaceId,
    ancestor: WorkspaceId,
) -> Result<bool, StoreError> {
    let sql = Sql::same("__CHAIN__ SELECT COUNT(*) FROM chain WHERE id = $2 OR depth >= $3")
        .replace("__CHAIN__", &ancestor_chain("$3"));
    let n: i64 = db_query!(
        tx.exec(), query_scalar::<i64>, sql,
        DbUuid::from(start),
        DbUuid::from(ancestor),
        MAX_DEPTH;
        fetch_one
    )?;
    Ok(n > 0)
}
