//! The store conformance suite: every test runs against SQLite and PostgreSQL.

use molecule_domain::{DeliveryMode, Runtime, Tier, WorkspaceAccess, WorkspaceId, WorkspaceStatus};
use molecule_store::testing::TestStore;
use molecule_store::{Backend, NewWorkspace, PlainToken, StoreError, Transition, WorkspaceUpdate};

use molecule_store::on_both_backends;

on_both_backends!(
    create_then_get_round_trips_every_field,
    create_defaults,
    create_with_missing_or_removed_parent_is_refused,
    list_hides_removed_and_orders_by_creation,
    update_applies_all_changes_together,
    update_refuses_cycles_and_writes_nothing,
    update_of_missing_or_removed_is_not_found,
    transition_follows_the_table,
    transition_guard_and_missing_workspace,
    concurrent_transitions_serialise,
    tokens_issue_validate_list_revoke,
    tokens_of_removed_workspaces_are_dead,
    bootstrap_tokens_are_single_use_bound_and_expire,
    migrations_are_idempotent_on_reopen,
    descendants_come_parents_first_and_removal_is_one_step,
    purge_deletes_rows_and_detaches_references,
    layouts_upsert_keeps_what_is_not_given,
    heartbeats_and_registrations_skip_removed_workspaces,
    silent_workspaces_are_found_by_cutoff,
    transition_with_writes_url_and_reason_together,
    events_are_recorded_and_listed_newest_first,
    can_communicate_follows_the_hierarchy_rules,
    can_communicate_walks_at_most_32_ancestors,
    can_communicate_survives_a_corrupt_cycle,
    notifications_reach_listeners_on_postgres_only,
    secrets_are_encrypted_upserted_and_listed_without_values,
    secrets_of_older_databases_and_without_a_key,
    create_with_secrets_is_one_transaction,
    org_tokens_issue_validate_list_revoke,
);

async fn create_then_get_round_trips_every_field(s: TestStore) {
    let parent = s
        .workspaces()
        .create(NewWorkspace::named("lead"))
        .await
        .unwrap();
    let new = NewWorkspace {
        name: "Researcher — Zoë".into(),
        role: Some("reads papers".into()),
        tier: Tier::Standard,
        runtime: Runtime::new("claude-code").unwrap(),
        parent_id: Some(parent.id),
        workspace_dir: Some("/srv/work".into()),
        workspace_access: WorkspaceAccess::ReadOnly,
        delivery_mode: DeliveryMode::Poll,
        budget_limit: Some(12_345),
        max_concurrent_tasks: 3,
        hibernation_idle_minutes: Some(30),
    };
    let created = s.workspaces().create(new).await.unwrap();
    assert_eq!(created.status, WorkspaceStatus::Provisioning);
    assert_eq!(created.name, "Researcher — Zoë");
    assert_eq!(created.role.as_deref(), Some("reads papers"));
    assert_eq!(created.tier, 2);
    assert_eq!(created.runtime, "claude-code");
    assert_eq!(created.parent_id, Some(parent.id));
    assert_eq!(created.workspace_dir.as_deref(), Some("/srv/work"));
    assert_eq!(created.workspace_access, WorkspaceAccess::ReadOnly);
    assert_eq!(created.delivery_mode, DeliveryMode::Poll);
    assert_eq!(created.budget_limit, Some(12_345));
    assert_eq!(created.max_concurrent_tasks, 3);
    assert_eq!(created.hibernation_idle_minutes, Some(30));
    assert_eq!(
        created.awareness_namespace,
        Some(format!("workspace:{}", created.id))
    );
    assert_eq!(created.created_at, created.updated_at);
    let fetched = s.workspaces().get(created.id).await.unwrap().unwrap();
    assert_eq!(fetched, created);
}

async fn create_defaults(s: TestStore) {
    let mut new = NewWorkspace::named("solo");
    new.role = Some(String::new());
    new.max_concurrent_tasks = 0;
    let ws = s.workspaces().create(new).await.unwrap();
    assert_eq!(ws.role, None, "an empty role is stored as NULL");
    assert_eq!(ws.max_concurrent_tasks, 1);
    assert_eq!(ws.tier, Tier::DEFAULT.number());
    assert_eq!(ws.runtime, Runtime::DEFAULT);
    assert_eq!(ws.delivery_mode, DeliveryMode::Push);
    assert_eq!(ws.workspace_access, WorkspaceAccess::None);
    assert_eq!(ws.monthly_spend, 0);
    assert_eq!(ws.url, None);
    assert!(
        s.workspaces()
            .get(WorkspaceId::new())
            .await
            .unwrap()
            .is_none()
    );
}

async fn create_with_missing_or_removed_parent_is_refused(s: TestStore) {
    let mut new = NewWorkspace::named("orphan");
    new.parent_id = Some(WorkspaceId::new());
    let err = s.workspaces().create(new.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::ParentNotFound), "{err}");

    let gone = s
        .workspaces()
        .create(NewWorkspace::named("gone"))
        .await
        .unwrap();
    s.workspaces()
        .transition(gone.id, WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    new.parent_id = Some(gone.id);
    let err = s.workspaces().create(new).await.unwrap_err();
    assert!(matches!(err, StoreError::ParentNotFound), "{err}");
    // Nothing half-written: only the removed parent exists.
    assert!(s.workspaces().list().await.unwrap().is_empty());
}

async fn list_hides_removed_and_orders_by_creation(s: TestStore) {
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(
            s.workspaces()
                .create(NewWorkspace::named(name))
                .await
                .unwrap()
                .id,
        );
    }
    s.workspaces()
        .transition(ids[1], WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    let listed: Vec<_> = s
        .workspaces()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(listed, ["a", "c"]);
    // A removed workspace can still be read by id (GET answers 410 for it).
    let removed = s.workspaces().get(ids[1]).await.unwrap().unwrap();
    assert_eq!(removed.status, WorkspaceStatus::Removed);
}

async fn update_applies_all_changes_together(s: TestStore) {
    let parent = s
        .workspaces()
        .create(NewWorkspace::named("p"))
        .await
        .unwrap();
    let mut new = NewWorkspace::named("child");
    new.role = Some("old".into());
    new.budget_limit = Some(5);
    let ws = s.workspaces().create(new).await.unwrap();
    let updated = s
        .workspaces()
        .update(
            ws.id,
            WorkspaceUpdate {
                name: Some("renamed".into()),
                role: Some(None),
                tier: Some(Tier::FullAccess),
                runtime: Some(Runtime::new("hermes").unwrap()),
                parent_id: Some(Some(parent.id)),
                workspace_dir: Some(Some("/data".into())),
                workspace_access: Some(WorkspaceAccess::ReadWrite),
                delivery_mode: Some(DeliveryMode::Poll),
                budget_limit: Some(None),
                max_concurrent_tasks: Some(4),
                hibernation_idle_minutes: Some(Some(15)),
                position: Some((10.5, -3.0)),
                collapsed: Some(true),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.role, None);
    assert_eq!(updated.tier, 4);
    assert_eq!(updated.runtime, "hermes");
    assert_eq!(updated.parent_id, Some(parent.id));
    assert_eq!(updated.workspace_dir.as_deref(), Some("/data"));
    assert_eq!(updated.workspace_access, WorkspaceAccess::ReadWrite);
    assert_eq!(updated.delivery_mode, DeliveryMode::Poll);
    assert_eq!(updated.budget_limit, None);
    assert_eq!(updated.max_concurrent_tasks, 4);
    assert_eq!(updated.hibernation_idle_minutes, Some(15));
    let layout = s.layouts().get(ws.id).await.unwrap().unwrap();
    assert_eq!((layout.x, layout.y, layout.collapsed), (10.5, -3.0, true));
    assert!(updated.updated_at >= ws.updated_at);
    assert_eq!(s.workspaces().get(ws.id).await.unwrap().unwrap(), updated);

    // An empty update changes nothing but the clock.
    let same = s
        .workspaces()
        .update(ws.id, WorkspaceUpdate::default())
        .await
        .unwrap();
    assert_eq!(same.name, "renamed");
    // Making it a root again.
    let root = s
        .workspaces()
        .update(
            ws.id,
            WorkspaceUpdate {
                parent_id: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(root.parent_id, None);
}

async fn update_refuses_cycles_and_writes_nothing(s: TestStore) {
    let a = s
        .workspaces()
        .create(NewWorkspace::named("a"))
        .await
        .unwrap();
    let mut nb = NewWorkspace::named("b");
    nb.parent_id = Some(a.id);
    let b = s.workspaces().create(nb).await.unwrap();
    let mut nc = NewWorkspace::named("c");
    nc.parent_id = Some(b.id);
    let c = s.workspaces().create(nc).await.unwrap();

    for (target, parent) in [(a.id, a.id), (a.id, c.id), (a.id, b.id), (b.id, c.id)] {
        let err = s
            .workspaces()
            .update(
                target,
                WorkspaceUpdate {
                    name: Some("should not stick".into()),
                    parent_id: Some(Some(parent)),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ParentCycle), "{err}");
    }
    let err = s
        .workspaces()
        .update(
            c.id,
            WorkspaceUpdate {
                name: Some("should not stick".into()),
                parent_id: Some(Some(WorkspaceId::new())),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ParentNotFound), "{err}");
    for (ws, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        let now = s.workspaces().get(ws.id).await.unwrap().unwrap();
        assert_eq!(now.name, name);
        assert_eq!(now.parent_id, ws.parent_id);
    }
}

async fn update_of_missing_or_removed_is_not_found(s: TestStore) {
    let err = s
        .workspaces()
        .update(WorkspaceId::new(), WorkspaceUpdate::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("x"))
        .await
        .unwrap();
    s.workspaces()
        .transition(ws.id, WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    let err = s
        .workspaces()
        .update(ws.id, WorkspaceUpdate::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
}

async fn transition_follows_the_table(s: TestStore) {
    use WorkspaceStatus::*;
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("w"))
        .await
        .unwrap();
    let w = s.workspaces();
    assert_eq!(
        w.transition(ws.id, Online, None).await.unwrap(),
        Transition {
            from: Provisioning,
            to: Online
        }
    );
    // Every status of the enum is writable (the reference lost writes of two of them).
    for to in [
        Degraded,
        Offline,
        Provisioning,
        AwaitingAgent,
        Paused,
        AwaitingAgent,
        Online,
        Hibernating,
        Hibernated,
    ] {
        w.transition(ws.id, to, None).await.unwrap();
        assert_eq!(w.get(ws.id).await.unwrap().unwrap().status, to);
    }
    let err = w.transition(ws.id, Online, None).await.unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "a workspace cannot go from hibernated to online"
    );
    assert_eq!(w.get(ws.id).await.unwrap().unwrap().status, Hibernated);
    w.transition(ws.id, Provisioning, None).await.unwrap();
    w.transition(ws.id, Failed, None).await.unwrap();
    w.transition(ws.id, Removed, None).await.unwrap();
    for to in WorkspaceStatus::ALL {
        let err = w.transition(ws.id, *to, None).await.unwrap_err();
        assert!(matches!(err, StoreError::IllegalTransition(_)), "{err}");
    }
    assert_eq!(w.get(ws.id).await.unwrap().unwrap().status, Removed);
}

async fn transition_guard_and_missing_workspace(s: TestStore) {
    use WorkspaceStatus::*;
    let w = s.workspaces();
    let err = w
        .transition(WorkspaceId::new(), Online, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    let ws = w.create(NewWorkspace::named("g")).await.unwrap();
    // A heartbeat only revives offline workspaces: provisioning is not in its guard.
    let err = w
        .transition(ws.id, Online, Some(&[Offline]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnexpectedStatus {
                current: Provisioning
            }
        ),
        "{err}"
    );
    assert_eq!(w.get(ws.id).await.unwrap().unwrap().status, Provisioning);
    w.transition(ws.id, Online, Some(&[Provisioning, Offline]))
        .await
        .unwrap();
}

async fn concurrent_transitions_serialise(s: TestStore) {
    use WorkspaceStatus::*;
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("race"))
        .await
        .unwrap();
    s.workspaces()
        .transition(ws.id, Online, None)
        .await
        .unwrap();
    // Eight callers race to claim online -> hibernating; exactly one may win, because the
    // claim is only allowed from online/degraded and the winner moves it away from there.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = (*s).clone();
        tasks.push(tokio::spawn(async move {
            store
                .workspaces()
                .transition(ws.id, Hibernating, Some(&[Online, Degraded]))
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(tr) => {
                assert_eq!(tr.from, Online);
                won += 1;
            }
            Err(StoreError::UnexpectedStatus {
                current: Hibernating,
            }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1);
}

async fn tokens_issue_validate_list_revoke(s: TestStore) {
    let a = s
        .workspaces()
        .create(NewWorkspace::named("a"))
        .await
        .unwrap();
    let b = s
        .workspaces()
        .create(NewWorkspace::named("b"))
        .await
        .unwrap();
    let t = s.tokens();
    let first = t.issue(a.id).await.unwrap();
    let second = t.issue(a.id).await.unwrap();
    let other = t.issue(b.id).await.unwrap();
    assert_eq!(first.token.expose().len(), 43);
    assert_ne!(first.token, second.token);

    assert!(t.validate(a.id, &first.token).await.unwrap());
    assert!(
        !t.validate(b.id, &first.token).await.unwrap(),
        "bound to its workspace"
    );
    assert!(!t.validate(a.id, &other.token).await.unwrap());
    assert!(
        !t.validate(a.id, &PlainToken::new("x".repeat(43)))
            .await
            .unwrap()
    );
    assert_eq!(t.workspace_of(&other.token).await.unwrap(), Some(b.id));

    let listed = t.list(a.id, 50, 0).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, second.id, "newest first");
    assert_eq!(listed[0].prefix, &second.token.expose()[..8]);
    assert!(
        listed[1].last_used_at.is_some(),
        "validation bumps last_used_at"
    );
    assert_eq!(t.list(a.id, 1, 1).await.unwrap()[0].id, first.id);
    assert_eq!(t.count_live(a.id).await.unwrap(), 2);

    assert!(t.revoke(a.id, first.id).await.unwrap());
    assert!(!t.revoke(a.id, first.id).await.unwrap(), "already revoked");
    assert!(!t.revoke(b.id, second.id).await.unwrap(), "not b's token");
    assert!(!t.validate(a.id, &first.token).await.unwrap());
    assert!(t.validate(a.id, &second.token).await.unwrap());
    assert_eq!(t.revoke_all(a.id).await.unwrap(), 1);
    assert_eq!(t.count_live(a.id).await.unwrap(), 0);
    assert!(
        t.validate(b.id, &other.token).await.unwrap(),
        "b is untouched"
    );
}

async fn tokens_of_removed_workspaces_are_dead(s: TestStore) {
    let a = s
        .workspaces()
        .create(NewWorkspace::named("a"))
        .await
        .unwrap();
    let issued = s.tokens().issue(a.id).await.unwrap();
    s.workspaces()
        .transition(a.id, WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    assert!(!s.tokens().validate(a.id, &issued.token).await.unwrap());
    assert_eq!(s.tokens().workspace_of(&issued.token).await.unwrap(), None);
}

async fn bootstrap_tokens_are_single_use_bound_and_expire(s: TestStore) {
    let a = s
        .workspaces()
        .create(NewWorkspace::named("a"))
        .await
        .unwrap();
    let b = s
        .workspaces()
        .create(NewWorkspace::named("b"))
        .await
        .unwrap();
    let t = s.tokens();
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let first = t.issue_bootstrap(a.id, later).await.unwrap();
    assert_eq!(first.expose().len(), 43);
    // A new bootstrap replaces the old one.
    let boot = t.issue_bootstrap(a.id, later).await.unwrap();
    assert!(!t.bootstrap_valid(a.id, &first).await.unwrap());
    assert!(t.bootstrap_valid(a.id, &boot).await.unwrap());
    assert!(!t.bootstrap_valid(b.id, &boot).await.unwrap(), "bound to a");
    assert!(!t.consume_bootstrap(b.id, &boot).await.unwrap());
    assert_eq!(t.count_live(a.id).await.unwrap(), 0, "never an auth token");
    assert!(
        !t.validate(a.id, &boot).await.unwrap(),
        "a bootstrap token is not an auth token"
    );
    // Consumed once, for one caller.
    let (x, y) = tokio::join!(
        t.consume_bootstrap(a.id, &boot),
        t.consume_bootstrap(a.id, &boot)
    );
    assert!(x.unwrap() ^ y.unwrap(), "exactly one consumer");
    assert!(!t.bootstrap_valid(a.id, &boot).await.unwrap());
    // Expired: neither valid nor consumable.
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let old = t.issue_bootstrap(b.id, past).await.unwrap();
    assert!(!t.bootstrap_valid(b.id, &old).await.unwrap());
    assert!(!t.consume_bootstrap(b.id, &old).await.unwrap());
    // Revoking a workspace's tokens drops its bootstrap token too.
    let again = t.issue_bootstrap(b.id, later).await.unwrap();
    t.revoke_all(b.id).await.unwrap();
    assert!(!t.bootstrap_valid(b.id, &again).await.unwrap());
}

async fn migrations_are_idempotent_on_reopen(s: TestStore) {
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("kept"))
        .await
        .unwrap();
    let url = molecule_store::DatabaseUrl::parse(s.url()).unwrap();
    let again = molecule_store::Store::connect(&url).await.unwrap();
    assert_eq!(
        again.workspaces().get(ws.id).await.unwrap().unwrap().name,
        "kept"
    );
    again.ping().await.unwrap();
    assert_eq!(again.backend(), s.backend());
    again.close().await;
}

/// Creates a workspace under `parent`.
async fn child(s: &TestStore, name: &str, parent: Option<WorkspaceId>) -> WorkspaceId {
    let mut new = NewWorkspace::named(name);
    new.parent_id = parent;
    s.workspaces().create(new).await.unwrap().id
}

async fn can_communicate_follows_the_hierarchy_rules(s: TestStore) {
    //   a            b        (roots)
    //   ├── a1       └── b1
    //   │   └── a1x
    //   │       └── a1xy
    //   └── a2
    let a = child(&s, "a", None).await;
    let b = child(&s, "b", None).await;
    let a1 = child(&s, "a1", Some(a)).await;
    let a2 = child(&s, "a2", Some(a)).await;
    let a1x = child(&s, "a1x", Some(a1)).await;
    let a1xy = child(&s, "a1xy", Some(a1x)).await;
    let b1 = child(&s, "b1", Some(b)).await;
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
    for (caller, target, why) in allowed {
        assert!(w.can_communicate(caller, target).await.unwrap(), "{why}");
        assert!(w.can_communicate(target, caller).await.unwrap(), "{why}");
    }
    let denied = [
        (a1x, a2, "nephew and uncle"),
        (a1xy, a2, "different subtrees"),
        (a1, b1, "cousins across roots"),
        (a1, b, "a child and an unrelated root"),
        (a1xy, b1, "leaves of different trees"),
    ];
    for (caller, target, why) in denied {
        assert!(!w.can_communicate(caller, target).await.unwrap(), "{why}");
        assert!(!w.can_communicate(target, caller).await.unwrap(), "{why}");
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
    let mut chain = vec![child(&s, "c0", None).await];
    for i in 1..=34 {
        let parent = chain[i - 1];
        chain.push(child(&s, &format!("c{i}"), Some(parent)).await);
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
    let x = child(&s, "x", None).await;
    let y = child(&s, "y", Some(x)).await;
    let z = child(&s, "z", Some(y)).await;
    let outsider_parent = child(&s, "p", None).await;
    let outsider = child(&s, "o", Some(outsider_parent)).await;
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

async fn notifications_reach_listeners_on_postgres_only(s: TestStore) {
    use std::time::Duration;
    let Some(mut listener) = s.event_listener("molecule_test").await.unwrap() else {
        assert_eq!(s.backend(), Backend::Sqlite);
        // Notifying is a no-op without listeners to reach.
        s.events().notify("molecule_test", "hello").await.unwrap();
        return;
    };
    // A second pool on the same database, as another replica would have.
    let url = molecule_store::DatabaseUrl::parse(s.url()).unwrap();
    let other = molecule_store::Store::connect(&url).await.unwrap();
    other
        .events()
        .notify("molecule_test", "from the other replica")
        .await
        .unwrap();
    let big = "é".repeat(molecule_store::MAX_NOTIFY_BYTES / 2);
    s.events().notify("molecule_test", &big).await.unwrap();
    s.events().notify("elsewhere", "not for us").await.unwrap();
    s.events().notify("molecule_test", "last").await.unwrap();
    let bound = Duration::from_secs(10);
    for expected in ["from the other replica", big.as_str(), "last"] {
        let got = tokio::time::timeout(bound, listener.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, expected);
    }
    other.close().await;
}

/// A database made by the reference server (its `schema_migrations` table, the enum with its
/// first eight values, an older `workspaces` table and a row in it) is adopted in place.
#[tokio::test]
async fn a_reference_database_is_adopted_in_place() {
    use sqlx::Connection;
    let fresh = TestStore::postgres().await;
    // Start from an empty database of the same server, shaped like an older reference one.
    let (server, _) = fresh.url().rsplit_once('/').unwrap();
    let name = format!("molecule_ref_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(fresh.url()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut reference = sqlx::PgConnection::connect(&format!("{server}/{name}"))
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (filename TEXT PRIMARY KEY, \
           applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (filename) VALUES ('001_initial.sql'), ('043_status_enum.up.sql');
         CREATE TYPE workspace_status AS ENUM ('provisioning', 'online', 'offline', 'degraded',
           'failed', 'removed', 'paused', 'hibernated');
         CREATE TABLE workspaces (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), name TEXT NOT NULL,
           role TEXT, tier INTEGER DEFAULT 1, status workspace_status DEFAULT 'provisioning',
           url TEXT, agent_card JSONB, parent_id UUID REFERENCES workspaces(id),
           forwarded_to UUID REFERENCES workspaces(id), last_heartbeat_at TIMESTAMPTZ,
           last_error_rate FLOAT8 DEFAULT 0, last_sample_error TEXT, active_tasks INTEGER DEFAULT 0,
           uptime_seconds INTEGER DEFAULT 0, created_at TIMESTAMPTZ DEFAULT now(),
           updated_at TIMESTAMPTZ DEFAULT now(), runtime TEXT DEFAULT 'langgraph');
         INSERT INTO workspaces (id, name, status) VALUES
           ('6f9619ff-8b86-d011-b42d-00c04fc964ff', 'legacy', 'online');",
    )
    .execute(&mut reference)
    .await
    .unwrap();
    reference.close().await.unwrap();

    let store = molecule_store::Store::connect(
        &molecule_store::DatabaseUrl::parse(&format!("{server}/{name}")).unwrap(),
    )
    .await
    .expect("adopt the reference database");
    let id: WorkspaceId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
    let legacy = store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(legacy.name, "legacy");
    assert_eq!(legacy.status, WorkspaceStatus::Online);
    assert_eq!(
        legacy.delivery_mode,
        DeliveryMode::Push,
        "added column, default"
    );
    // The two values the reference added late are usable at once.
    store
        .workspaces()
        .transition(id, WorkspaceStatus::AwaitingAgent, None)
        .await
        .unwrap();
    let issued = store.tokens().issue(id).await.unwrap();
    assert!(store.tokens().validate(id, &issued.token).await.unwrap());
    store.close().await;
    let _ = admin.close().await;
}

async fn tree(s: &TestStore) -> (WorkspaceId, WorkspaceId, WorkspaceId, WorkspaceId) {
    let root = s
        .workspaces()
        .create(NewWorkspace::named("root"))
        .await
        .unwrap()
        .id;
    let mut n = NewWorkspace::named("child");
    n.parent_id = Some(root);
    let child = s.workspaces().create(n).await.unwrap().id;
    let mut n = NewWorkspace::named("grandchild");
    n.parent_id = Some(child);
    let grandchild = s.workspaces().create(n).await.unwrap().id;
    let mut n = NewWorkspace::named("second child");
    n.parent_id = Some(root);
    let second = s.workspaces().create(n).await.unwrap().id;
    (root, child, grandchild, second)
}

async fn descendants_come_parents_first_and_removal_is_one_step(s: TestStore) {
    let (root, child, grandchild, second) = tree(&s).await;
    let found: Vec<_> = s
        .workspaces()
        .descendants(root)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(found, [child, second, grandchild]);
    let kids: Vec<_> = s
        .workspaces()
        .children(root)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
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
    let left: Vec<_> = s
        .workspaces()
        .descendants(root)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
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

async fn layouts_upsert_keeps_what_is_not_given(s: TestStore) {
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("l"))
        .await
        .unwrap()
        .id;
    assert!(s.layouts().get(ws).await.unwrap().is_none());
    s.layouts().upsert(ws, None, Some(true)).await.unwrap();
    let l = s.layouts().get(ws).await.unwrap().unwrap();
    assert_eq!((l.x, l.y, l.collapsed), (0.0, 0.0, true));
    s.layouts()
        .upsert(ws, Some((5.0, 6.0)), None)
        .await
        .unwrap();
    let l = s.layouts().get(ws).await.unwrap().unwrap();
    assert_eq!((l.x, l.y, l.collapsed), (5.0, 6.0, true));
    assert_eq!(s.layouts().all().await.unwrap().len(), 1);
}

async fn heartbeats_and_registrations_skip_removed_workspaces(s: TestStore) {
    use molecule_store::Heartbeat;
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("hb"))
        .await
        .unwrap();
    let hb = Heartbeat {
        error_rate: 0.25,
        sample_error: Some("boom".into()),
        active_tasks: 2,
        uptime_seconds: 60,
        current_task: Some("writing".into()),
        monthly_spend: Some(1234),
    };
    let before = s
        .workspaces()
        .record_heartbeat(ws.id, &hb)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.active_tasks, 0);
    let after = s.workspaces().get(ws.id).await.unwrap().unwrap();
    assert_eq!(after.active_tasks, 2);
    assert_eq!(after.monthly_spend, 1234);
    assert_eq!(after.current_task.as_deref(), Some("writing"));
    assert!(after.last_heartbeat_at.is_some());
    // No spend reported: the stored value stays.
    let quiet = Heartbeat {
        monthly_spend: None,
        ..hb.clone()
    };
    s.workspaces()
        .record_heartbeat(ws.id, &quiet)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.workspaces()
            .get(ws.id)
            .await
            .unwrap()
            .unwrap()
            .monthly_spend,
        1234
    );

    let card = serde_json::json!({"name": "agent", "skills": []});
    s.workspaces()
        .record_registration(
            ws.id,
            Some("http://10.0.0.5:8000"),
            &card,
            DeliveryMode::Poll,
        )
        .await
        .unwrap()
        .unwrap();
    let reg = s.workspaces().get(ws.id).await.unwrap().unwrap();
    assert_eq!(reg.url.as_deref(), Some("http://10.0.0.5:8000"));
    assert_eq!(reg.agent_card, Some(card.clone()));
    assert_eq!(reg.delivery_mode, DeliveryMode::Poll);
    assert!(s.workspaces().set_agent_card(ws.id, &card).await.unwrap());
    assert!(
        !s.workspaces()
            .set_agent_card(WorkspaceId::new(), &card)
            .await
            .unwrap()
    );

    s.workspaces()
        .transition(ws.id, WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    assert!(
        s.workspaces()
            .record_heartbeat(ws.id, &hb)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.workspaces()
            .record_registration(ws.id, None, &card, DeliveryMode::Push)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.workspaces()
            .record_registration(WorkspaceId::new(), None, &card, DeliveryMode::Push)
            .await
            .unwrap()
            .is_none(),
        "registration never creates a workspace"
    );
}

async fn silent_workspaces_are_found_by_cutoff(s: TestStore) {
    use molecule_store::Heartbeat;
    use time::{Duration, OffsetDateTime};
    let a = s
        .workspaces()
        .create(NewWorkspace::named("a"))
        .await
        .unwrap()
        .id;
    let b = s
        .workspaces()
        .create(NewWorkspace::named("b"))
        .await
        .unwrap()
        .id;
    for id in [a, b] {
        s.workspaces()
            .transition(id, WorkspaceStatus::Online, None)
            .await
            .unwrap();
    }
    s.workspaces()
        .record_heartbeat(b, &Heartbeat::default())
        .await
        .unwrap();
    let online = [WorkspaceStatus::Online];
    let future = OffsetDateTime::now_utc() + Duration::hours(1);
    let past = OffsetDateTime::now_utc() - Duration::hours(1);
    let ids = |v: Vec<molecule_store::Workspace>| v.into_iter().map(|w| w.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.workspaces().silent_since(&online, future).await.unwrap()),
        [a, b]
    );
    assert!(
        s.workspaces()
            .silent_since(&online, past)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.workspaces()
            .silent_since(&[WorkspaceStatus::Paused], future)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(s.workspaces().with_status(&online).await.unwrap()),
        [a, b]
    );
    assert_eq!(s.workspaces().inbound_secret(a).await.unwrap(), None);
    s.workspaces()
        .set_inbound_secret(a, "sekrit")
        .await
        .unwrap();
    assert_eq!(
        s.workspaces().inbound_secret(a).await.unwrap().as_deref(),
        Some("sekrit")
    );
}

async fn transition_with_writes_url_and_reason_together(s: TestStore) {
    use molecule_store::StatusChange;
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("t"))
        .await
        .unwrap()
        .id;
    s.workspaces()
        .set_url(ws, Some("http://agent:8000"))
        .await
        .unwrap();
    s.workspaces()
        .transition(ws, WorkspaceStatus::Online, None)
        .await
        .unwrap();
    s.workspaces()
        .transition_with(
            ws,
            WorkspaceStatus::Paused,
            None,
            &StatusChange::clear_url(),
        )
        .await
        .unwrap();
    let paused = s.workspaces().get(ws).await.unwrap().unwrap();
    assert_eq!(paused.url, None);
    s.workspaces()
        .transition(ws, WorkspaceStatus::Provisioning, None)
        .await
        .unwrap();
    s.workspaces()
        .transition_with(
            ws,
            WorkspaceStatus::Failed,
            None,
            &StatusChange::failed("workspace start failed"),
        )
        .await
        .unwrap();
    let failed = s.workspaces().get(ws).await.unwrap().unwrap();
    assert_eq!(
        failed.last_sample_error.as_deref(),
        Some("workspace start failed")
    );
    // A refused transition writes none of its columns.
    let err = s
        .workspaces()
        .transition_with(
            ws,
            WorkspaceStatus::Hibernated,
            None,
            &StatusChange::failed("x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition(_)));
    assert_eq!(
        s.workspaces()
            .get(ws)
            .await
            .unwrap()
            .unwrap()
            .last_sample_error
            .as_deref(),
        Some("workspace start failed")
    );
    assert!(
        s.workspaces()
            .set_budget_limit(ws, Some(500))
            .await
            .unwrap()
    );
    assert_eq!(
        s.workspaces().get(ws).await.unwrap().unwrap().budget_limit,
        Some(500)
    );
    assert!(
        !s.workspaces()
            .set_budget_limit(WorkspaceId::new(), None)
            .await
            .unwrap()
    );
}

async fn events_are_recorded_and_listed_newest_first(s: TestStore) {
    let ws = s
        .workspaces()
        .create(NewWorkspace::named("e"))
        .await
        .unwrap()
        .id;
    let first = s
        .events()
        .record(
            "WORKSPACE_PROVISIONING",
            Some(ws),
            &serde_json::json!({"name": "e"}),
        )
        .await
        .unwrap();
    let second = s
        .events()
        .record("WORKSPACE_ONLINE", Some(ws), &serde_json::json!({}))
        .await
        .unwrap();
    s.events()
        .record("OTHER", None, &serde_json::json!({}))
        .await
        .unwrap();
    let mine = s.events().recent(Some(ws), 100).await.unwrap();
    assert_eq!(
        mine.iter().map(|e| e.id).collect::<Vec<_>>(),
        [second.id, first.id]
    );
    assert_eq!(mine[1].payload, Some(serde_json::json!({"name": "e"})));
    assert_eq!(s.events().recent(None, 2).await.unwrap().len(), 2);
    assert_eq!(
        s.events().get(first.id).await.unwrap().unwrap().event_type,
        "WORKSPACE_PROVISIONING"
    );
}

fn keyed(s: &TestStore) -> molecule_store::Store {
    (**s)
        .clone()
        .with_secret_key(Some(molecule_store::SecretKey::generate().unwrap()))
}

async fn secrets_are_encrypted_upserted_and_listed_without_values(s: TestStore) {
    let store = keyed(&s);
    let id = store
        .workspaces()
        .create(NewWorkspace::named("w"))
        .await
        .unwrap()
        .id;
    let secrets = store.secrets();
    secrets.set_workspace(id, "B", "bee-value").await.unwrap();
    secrets.set_workspace(id, "A", "first").await.unwrap();
    secrets.set_workspace(id, "A", "second").await.unwrap();
    secrets.set_global("G", "global-value").await.unwrap();
    let (raw, version) = secrets.raw_workspace(id, "A").await.unwrap().unwrap();
    assert_eq!(version, molecule_store::VERSION_AES_GCM);
    assert!(!String::from_utf8_lossy(&raw).contains("second"));
    let (graw, gversion) = secrets.raw_global("G").await.unwrap().unwrap();
    assert_eq!(gversion, molecule_store::VERSION_AES_GCM);
    assert!(!String::from_utf8_lossy(&graw).contains("global-value"));
    let listed: Vec<String> = secrets
        .list_workspace(id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(listed, ["A", "B"]);
    assert_eq!(
        secrets
            .get_workspace(id, "A")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "second"
    );
    let values: Vec<(String, String)> = secrets
        .workspace_values(id)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap().into_exposed()))
        .collect();
    assert_eq!(
        values,
        [
            ("A".into(), "second".into()),
            ("B".into(), "bee-value".into())
        ]
    );
    assert_eq!(secrets.workspaces_using_global("G").await.unwrap(), [id]);
    assert!(
        secrets
            .workspaces_using_global("A")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(secrets.delete_workspace(id, "A").await.unwrap());
    assert!(!secrets.delete_workspace(id, "A").await.unwrap());
    assert!(secrets.delete_global("G").await.unwrap());
    assert!(secrets.list_global().await.unwrap().is_empty());
    // Purge removes a workspace's secrets with it.
    store.workspaces().purge(&[id]).await.unwrap();
    assert!(secrets.list_workspace(id).await.unwrap().is_empty());
}

async fn secrets_of_older_databases_and_without_a_key(s: TestStore) {
    let id = s
        .workspaces()
        .create(NewWorkspace::named("w"))
        .await
        .unwrap()
        .id;
    // No key: plaintext, version 0.
    s.secrets().set_workspace(id, "P", "plain").await.unwrap();
    let (raw, version) = s.secrets().raw_workspace(id, "P").await.unwrap().unwrap();
    assert_eq!((raw.as_slice(), version), (&b"plain"[..], 0));
    // A key loaded later still reads version-0 rows, and writes version 1.
    let store = keyed(&s);
    assert_eq!(
        store
            .secrets()
            .get_workspace(id, "P")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "plain"
    );
    store.secrets().set_workspace(id, "E", "enc").await.unwrap();
    // Without the key, version 1 cannot be read; an unknown version never.
    assert!(matches!(
        s.secrets().get_workspace(id, "E").await,
        Err(molecule_store::StoreError::Cipher(
            molecule_store::CipherError::NoKey
        ))
    ));
    store
        .secrets()
        .put_raw_workspace(id, "F", b"future", 7)
        .await
        .unwrap();
    assert!(matches!(
        store.secrets().get_workspace(id, "F").await,
        Err(molecule_store::StoreError::Cipher(
            molecule_store::CipherError::UnknownVersion(7)
        ))
    ));
}

async fn create_with_secrets_is_one_transaction(s: TestStore) {
    let store = keyed(&s);
    let secrets = vec![("K".to_owned(), molecule_store::Secret::new("v"))];
    let ws = store
        .workspaces()
        .create_with_secrets(NewWorkspace::named("w"), &secrets)
        .await
        .unwrap();
    assert_eq!(
        store
            .secrets()
            .get_workspace(ws.id, "K")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "v"
    );
    // A failing create (missing parent) leaves no secret rows behind.
    let mut orphan = NewWorkspace::named("orphan");
    orphan.parent_id = Some(WorkspaceId::new());
    assert!(
        store
            .workspaces()
            .create_with_secrets(orphan, &secrets)
            .await
            .is_err()
    );
    assert_eq!(store.workspaces().list().await.unwrap().len(), 1);
}

async fn org_tokens_issue_validate_list_revoke(s: TestStore) {
    let org = s
        .workspaces()
        .create(NewWorkspace::named("org"))
        .await
        .unwrap()
        .id;
    let tokens = s.org_tokens();
    let a = tokens.issue(Some("a"), "admin-token", None).await.unwrap();
    let b = tokens
        .issue(None, "org-token:abcdefgh", Some(org.as_uuid()))
        .await
        .unwrap();
    assert_eq!(a.token.expose().len(), 43);
    assert_ne!(a.token.expose(), b.token.expose());
    let who = tokens.validate(&b.token).await.unwrap().unwrap();
    assert_eq!(who.id, b.info.id);
    assert_eq!(who.org_id, Some(org.as_uuid()));
    assert_eq!(who.prefix, &b.token.expose()[..8]);
    assert!(
        tokens
            .validate(&molecule_store::PlainToken::new("nope"))
            .await
            .unwrap()
            .is_none()
    );
    let list = tokens.list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, b.info.id, "newest first");
    assert!(list[0].last_used_at.is_some());
    assert_eq!(list[1].name.as_deref(), Some("a"));
    // A workspace token is not an org token, and the other way round.
    let wtoken = s.tokens().issue(org).await.unwrap().token;
    assert!(tokens.validate(&wtoken).await.unwrap().is_none());
    assert_eq!(s.tokens().workspace_of(&a.token).await.unwrap(), None);
    assert!(tokens.revoke(a.info.id).await.unwrap());
    assert!(!tokens.revoke(a.info.id).await.unwrap());
    assert!(tokens.validate(&a.token).await.unwrap().is_none());
    assert_eq!(tokens.list().await.unwrap().len(), 1);
}
