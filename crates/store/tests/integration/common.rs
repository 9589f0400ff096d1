//! What the store tests share: workspaces made in one call, fixed instants, a keyed store.

use molecule_domain::WorkspaceId;
use molecule_store::{NewWorkspace, SecretKey, Store, Workspace};
use time::OffsetDateTime;

/// Creates a root workspace named `name`.
pub async fn named(s: &Store, name: &str) -> Workspace {
    let new = NewWorkspace::named(name);
    s.workspaces().create(new).await.unwrap()
}

/// Creates a workspace named `name` under `parent`; returns its id.
pub async fn workspace(s: &Store, name: &str, parent: Option<WorkspaceId>) -> WorkspaceId {
    let mut new = NewWorkspace::named(name);
    new.parent_id = parent;
    s.workspaces().create(new).await.unwrap().id
}

/// The ids of workspace rows, in their order.
pub fn ids(rows: Vec<Workspace>) -> Vec<WorkspaceId> {
    rows.into_iter().map(|w| w.id).collect()
}

/// A fixed instant, `seconds` after another.
pub fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

/// The same database through a store with a fresh secret key.
pub fn keyed(s: &Store) -> Store {
    s.clone()
        .with_secret_key(Some(SecretKey::generate().unwrap()))
}
