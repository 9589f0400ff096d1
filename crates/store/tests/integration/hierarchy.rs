//! The hierarchy: who may communicate with whom (at most 32 ancestors up, even in a corrupt
//! cycle), descendants parents first, removal of a subtree in one step, and purge.

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_store::testing::TestStore;
use molecule_store::{Backend, on_both_backends};

use crate::common::{ids, workspace};

on_both_backends!(
    can_communicate_follows_the_hierarchy_rules,
    can_communicate_walks_at_most_32_ancestors,
    can_communicate_survives_a_corrupt_cycle,
    descendants_come_parents_first_and_removal_is_one_step,
    purge_deletes_rows_and_detaches_references,
);

async fn can_communicate_follows_the_hierarchy_rules(s: TestStore) {
    //   a            b        (roots)
    //   ├── a1       └── b1
    //   │   └── a1x
    //   │       └── a1xy
    //   └── a2
    let a = workspace(&s, "a", None).await;
    let b = workspace(&s, "b", None).await;
    let a1 = workspace(&s, "a1", Some(a)).await;
    let a2 = workspace(&s, "a2", Some(a)).await;
    let a1x = workspace(&s, "a1x", Some(a1)).await;
    let a1xy = workspace(&s, "a1xy", Some(a1x)).await;
    let b1 = workspace(&s, "b1", Some(b)).await;
    let w = s.workspaces();
    let allowed = [
        (a, a, "self"),
        (a, b, "roots are siblings"),
        (a1, a2, "siblings"),
        (a, a1, "parent to child"),
        (a1x, a1, "child to parent"),
        (a, a1xy, "ancestor to descendant, skipping levels"),
        (a1xy, a, "descendant to ancestor, skipping levels"),
    ];
    let denied = [
        (a1x, a2, "nephew and uncle"),
        (a1xy, a2, "different subtrees"),
        (a1, b1, "cousins across roots"),
        (a1, b, "a child and an unrelated root"),
        (a1xy, b1, "leaves of different trees"),
    ];
    // Both ways round.
    let cases = allowed.map(|c| (c, true)).into_iter();
    for ((caller, target, why), expected) in cases.chain(denied.map(|c| (c, false))) {
        assert_eq!(
            w.can_communicate(caller, target).await.unwrap(),
            expected,
            "{why}"
        );
        assert_eq!(
            w.can_communicate(target, caller).await.unwrap(),
            expected,
            "{why}"
        );
    }
    let missing = WorkspaceId::new();
    assert!(!w.can_communicate(a, missing).await.unwrap());
    assert!(!w.can_communicate(missing, a).await.unwrap());
    assert!(w.can_communicate(missing, missing).await.unwrap(), "self");
    // Status is ignored: a removed sibling still counts.
    w.transition(a2, WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    assert!(w.can_communicate(a1, a2).await.unwrap());
}

async fn can_communicate_walks_at_most_32_ancestors(s: TestStore) {
    // chain[0] is the root; chain[i] has i ancestors.
    let mut chain = vec![workspace(&s, "c0", None).await];
    for i in 1..=34 {
        let parent = chain[i - 1];
        chain.push(workspace(&s, &format!("c{i}"), Some(parent)).await);
    }
    let w = s.workspaces();
    let leaf = chain[34];
    // chain[2] is 32 hops above the leaf, chain[1] 33 hops.
    assert!(w.can_communicate(chain[2], leaf).await.unwrap());
    assert!(w.can_communicate(leaf, chain[2]).await.unwrap());
    assert!(!w.can_communicate(chain[1], leaf).await.unwrap());
    assert!(!w.can_communicate(leaf, chain[1]).await.unwrap());
    assert!(!w.can_communicate(chain[0], leaf).await.unwrap());
}

async fn can_communicate_survives_a_corrupt_cycle(s: TestStore) {
    use sqlx::Connection;
    let x = workspace(&s, "x", None).await;
    let y = workspace(&s, "y", Some(x)).await;
    let z = workspace(&s, "z", Some(y)).await;
    let outsider_parent = workspace(&s, "p", None).await;
    let outsider = workspace(&s, "o", Some(outsider_parent)).await;
    // x -> z -> y -> x: only a corrupt database has this (updates refuse cycles).
    let cycle = format!("UPDATE workspaces SET parent_id = '{z}' WHERE id = '{x}'");
    match s.backend() {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(s.url()).await.unwrap();
            sqlx::query(&cycle).execute(&mut c).await.unwrap();
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(s.url()).await.unwrap();
            sqlx::query(&cycle).execute(&mut c).await.unwrap();
        }
    }
    let w = s.workspaces();
    assert!(!w.can_communicate(outsider, x).await.unwrap());
    assert!(!w.can_communicate(z, outsider).await.unwrap());
    assert!(w.can_communicate(x, y).await.unwrap());
}

/// A root with two children, the first with a child of its own.
async fn tree(s: &TestStore) -> (WorkspaceId, WorkspaceId, WorkspaceId, WorkspaceId) {
    let root = workspace(s, "root", None).await;
    let child = workspace(s, "child", Some(root)).await;
    let grandchild = workspace(s, "grandchild", Some(child)).await;
    let second = workspace(s, "second child", Some(root)).await;
    (root, child, grandchild, second)
}

async fn descendants_come_parents_first_and_removal_is_one_step(s: TestStore) {
    let (root, child, grandchild, second) = tree(&s).await;
    let found = ids(s.workspaces().descendants(root).await.unwrap());
    assert_eq!(found, [child, second, grandchild]);
    let kids = ids(s.workspaces().children(root).await.unwrap());
    assert_eq!(kids, [child, second]);

    let token = s.tokens().issue(grandchild).await.unwrap();
    s.layouts()
        .upsert(child, Some((1.0, 2.0)), None)
        .await
        .unwrap();
    let removed = s
        .workspaces()
        .remove_all(&[child, grandchild])
        .await
        .unwrap();
    assert_eq!(removed, [child, grandchild]);
    assert_eq!(s.tokens().count_live(grandchild).await.unwrap(), 0);
    assert!(!s.tokens().validate(grandchild, &token.token).await.unwrap());
    assert!(s.layouts().get(child).await.unwrap().is_none());
    assert_eq!(
        s.workspaces().get(child).await.unwrap().unwrap().status,
        WorkspaceStatus::Removed
    );
    // Removing again changes nothing; the live sibling stays.
    assert!(
        s.workspaces()
            .remove_all(&[child])
            .await
            .unwrap()
            .is_empty()
    );
    let left = ids(s.workspaces().descendants(root).await.unwrap());
    assert_eq!(left, [second]);
}

async fn purge_deletes_rows_and_detaches_references(s: TestStore) {
    let (root, child, grandchild, second) = tree(&s).await;
    s.tokens().issue(child).await.unwrap();
    s.workspaces().purge(&[child]).await.unwrap();
    assert!(s.workspaces().get(child).await.unwrap().is_none());
    let orphan = s.workspaces().get(grandchild).await.unwrap().unwrap();
    assert_eq!(
        orphan.parent_id, None,
        "references to a purged row are cleared"
    );
    assert!(s.workspaces().get(second).await.unwrap().is_some());
    assert!(s.workspaces().get(root).await.unwrap().is_some());
}
