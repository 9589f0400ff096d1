//! The communication rules of the workspace hierarchy (`CanCommunicate` of the reference).

use molecule_domain::WorkspaceId;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::DbUuid;
use crate::workspaces::{Workspaces, ancestor_chain};

/// How many ancestors the walk up from a workspace visits at most. A longer chain (or a
/// corrupt cycle) is cut there, failing closed.
pub const MAX_ANCESTOR_HOPS: i64 = 32;

/// One workspace and its ancestors, nearest first.
struct Lineage {
    /// The workspace's own parent.
    parent: Option<WorkspaceId>,
    /// Its ancestors, parent first, at most [`MAX_ANCESTOR_HOPS`] of them.
    ancestors: Vec<WorkspaceId>,
}

impl Workspaces<'_> {
    /// Whether `caller` may talk to `target`, by `parent_id` only (status is ignored, removed
    /// rows count): itself; siblings, including every root with every other root; parent and
    /// child; any ancestor or descendant (within [`MAX_ANCESTOR_HOPS`]). A missing row denies.
    pub async fn can_communicate(
        &self,
        caller: WorkspaceId,
        target: WorkspaceId,
    ) -> Result<bool, StoreError> {
        if caller == target {
            return Ok(true);
        }
        let Some(caller_line) = lineage(self.pool(), caller).await? else {
            return Ok(false);
        };
        let Some(target_line) = lineage(self.pool(), target).await? else {
            return Ok(false);
        };
        Ok(caller_line.parent == target_line.parent
            || target_line.ancestors.contains(&caller)
            || caller_line.ancestors.contains(&target))
    }
}

/// The parent and ancestors of `id`, or `None` when there is no such row.
async fn lineage(db: &Pool, id: WorkspaceId) -> Result<Option<Lineage>, StoreError> {
    let sql = Sql::same("__CHAIN__ SELECT id, parent_id FROM chain ORDER BY depth")
        .replace("__CHAIN__", &ancestor_chain("$2"));
    let rows: Vec<(DbUuid, Option<DbUuid>)> = db_query!(
        db.exec(), query_as::<(DbUuid, Option<DbUuid>)>, sql,
        DbUuid::from(id),
        MAX_ANCESTOR_HOPS;
        fetch_all
    )?;
    let mut rows = rows.into_iter();
    let Some((_, parent)) = rows.next() else {
        return Ok(None);
    };
    Ok(Some(Lineage {
        parent: parent.map(Into::into),
        ancestors: rows.map(|(a, _)| a.into()).collect(),
    }))
}
