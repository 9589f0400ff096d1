//! The communication rules of the workspace hierarchy (`CanCommunicate` of the reference).

use molecule_domain::WorkspaceId;

use crate::StoreError;
use crate::workspaces::Workspaces;

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
        let Some(caller_line) = lineage(self, caller).await? else {
            return Ok(false);
        };
        let Some(target_line) = lineage(self, target).await? else {
            return Ok(false);
        };
        Ok(caller_line.parent == target_line.parent
            || target_line.ancestors.contains(&caller)
            || caller_line.ancestors.contains(&target))
    }
}

/// The parent and ancestors of `id`, or `None` when there is no such row, walked through
/// the registry cache (a row not cached is read once and kept).
async fn lineage(ws: &Workspaces<'_>, id: WorkspaceId) -> Result<Option<Lineage>, StoreError> {
    let Some(own) = ws.routing(id).await? else {
        return Ok(None);
    };
    let parent = own.workspace.parent_id;
    let mut ancestors = Vec::new();
    let mut next = parent;
    while let Some(up) = next {
        if ancestors.len() >= usize::try_from(MAX_ANCESTOR_HOPS).unwrap_or(32) {
            break;
        }
        let Some(row) = ws.routing(up).await? else {
            break;
        };
        ancestors.push(up);
        next = row.workspace.parent_id;
    }
    Ok(Some(Lineage { parent, ancestors }))
}
