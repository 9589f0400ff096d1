//! Workspace rows: every field round-trips, the defaults, a missing or removed parent refused,
//! the list without the removed, updates applied together (cycles refused, nothing written),
//! and the canvas layout.

use molecule_domain::{DeliveryMode, Runtime, Tier, WorkspaceAccess, WorkspaceId, WorkspaceStatus};
use molecule_store::testing::TestStore;
use molecule_store::{NewWorkspace, StoreError, WorkspaceUpdate, on_both_backends};

use crate::common::named;

on_both_backends!(
    create_then_get_round_trips_every_field,
    create_defaults,
    create_with_missing_or_removed_parent_is_refused,
    list_hides_removed_and_orders_by_creation,
    update_applies_all_changes_together,
    update_refuses_cycles_and_writes_nothing,
    update_of_missing_or_removed_is_not_found,
    layouts_upsert_keeps_what_is_not_given,
);

async fn create_then_get_round_trips_every_field(s: TestStore) {
    let parent = named(&s, "lead").await;
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

    let gone = named(&s, "gone").await;
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
        ids.push(named(&s, name).await.id);
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
    let parent = named(&s, "p").await;
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
    let a = named(&s, "a").await;
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
    let ws = named(&s, "x").await;
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

async fn layouts_upsert_keeps_what_is_not_given(s: TestStore) {
    let ws = named(&s, "l").await.id;
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
