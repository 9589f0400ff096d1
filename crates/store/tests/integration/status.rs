//! Workspace status: the transition table and its guards (concurrent claims serialised), the
//! columns written with a transition, heartbeats and registrations (never of the removed), and
//! the liveness queries.

use molecule_domain::{DeliveryMode, WorkspaceId, WorkspaceStatus};
use molecule_store::testing::TestStore;
use molecule_store::{StoreError, Transition, on_both_backends};

use crate::common::{ids, named};

on_both_backends!(
    transition_follows_the_table,
    transition_guard_and_missing_workspace,
    concurrent_transitions_serialise,
    transition_with_writes_url_and_reason_together,
    heartbeats_and_registrations_skip_removed_workspaces,
    silent_workspaces_are_found_by_cutoff,
);

async fn transition_follows_the_table(s: TestStore) {
    use WorkspaceStatus::*;
    let ws = named(&s, "w").await;
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
    let ws = named(&s, "g").await;
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
    let ws = named(&s, "race").await;
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

async fn transition_with_writes_url_and_reason_together(s: TestStore) {
    use molecule_store::StatusChange;
    let ws = named(&s, "t").await.id;
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

async fn heartbeats_and_registrations_skip_removed_workspaces(s: TestStore) {
    use molecule_store::Heartbeat;
    let ws = named(&s, "hb").await;
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
    assert_eq!(before.workspace.active_tasks, 0);
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
    let a = named(&s, "a").await.id;
    let b = named(&s, "b").await.id;
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
