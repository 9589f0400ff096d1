//! The lifecycle of a running workspace: missed heartbeats and failed running checks, restart
//! (coalesced, refused for the removed), pause, resume and hibernation, and the orphan sweep.

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::Running;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{TestServer, assert_error, assert_json, assert_status, connection_of};

on_both_backends!(
    missed_heartbeats_go_offline_and_restart,
    unknown_running_check_changes_nothing,
    restart_is_refused_for_removed_and_coalesces,
    pause_resume_and_hibernate,
    idle_workspaces_hibernate_and_busy_ones_do_not,
    orphaned_compute_is_removed_and_console_is_served,
);

async fn missed_heartbeats_go_offline_and_restart(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (id, _) = s.online_workspace("silent").await;
    let before = s.backend().started(id);
    let changed = s
        .state
        .lifecycle
        .sweep_liveness(time::Duration::seconds(-1))
        .await
        .unwrap();
    assert_eq!(changed, 1);
    // Offline, then the automatic restart provisions it again.
    s.backend().wait_for(|b| b.started(id) == before + 1).await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Provisioning);
    assert!(
        s.backend().stopped(id) >= 1,
        "the old compute is stopped first"
    );
    let types = s.event_types_of(id).await;
    assert!(types.contains(&"WORKSPACE_OFFLINE".to_owned()), "{types:?}");

    // An external workspace goes to awaiting_agent and is not restarted.
    let external = s.create_reply(json!({"name": "ext", "external": true}));
    let (ext, token) = connection_of(&external.await);
    s.heartbeat(Some(&token), json!({"workspace_id": ext}))
        .await;
    assert_eq!(s.status_of(ext).await, WorkspaceStatus::Online);
    s.state
        .lifecycle
        .sweep_liveness(time::Duration::seconds(-1))
        .await
        .unwrap();
    assert_eq!(s.status_of(ext).await, WorkspaceStatus::AwaitingAgent);
    assert_eq!(s.backend().started(ext), 0);
}

async fn unknown_running_check_changes_nothing(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (id, _) = s.online_workspace("flaky").await;
    let starts = s.backend().started(id);
    s.backend()
        .answer_running(Running::Unknown("daemon timeout".into()));
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 0);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    s.backend().answer_running(Running::Yes);
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 0);
    assert_eq!(s.backend().started(id), starts, "no restart");
    s.backend().answer_running(Running::No);
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 1);
    s.backend().wait_for(|b| b.started(id) == starts + 1).await;
}

async fn restart_is_refused_for_removed_and_coalesces(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (id, token) = s.online_workspace("busy").await;
    let starts = s.backend().started(id);
    // Hold the first cycle inside `stop`, then ask four more times.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    *s.backend().stop_gate.lock().unwrap() = Some(gate.clone());
    let first = s.state.lifecycle.request_restart(id).expect("a new cycle");
    s.backend()
        .wait_for(|b| *b.stops_entered.lock().unwrap() == 1)
        .await;
    let mut absorbed = 0;
    for _ in 0..4 {
        if s.state.lifecycle.request_restart(id).is_none() {
            absorbed += 1;
        }
    }
    assert_eq!(absorbed, 4, "requests during a cycle are merged");
    gate.add_permits(100);
    first.await.unwrap();
    assert_eq!(
        s.backend().started(id),
        starts + 2,
        "one cycle plus exactly one follow-up"
    );

    // The HTTP route, then removal, then restart is refused.
    *s.backend().stop_gate.lock().unwrap() = None;
    // Restarts rotate the workspace token, so the operator restarts with the admin token.
    let restart = format!("/workspaces/{id}/restart");
    let by_agent = s.call("POST", &restart, Some(&token), None).await;
    assert_error(by_agent, 401, "invalid workspace auth token");
    let reply = assert_status(s.admin("POST", &restart, None).await, 200);
    assert_eq!(reply["status"], "provisioning");
    assert_status(
        s.admin("DELETE", &format!("/workspaces/{id}"), None).await,
        200,
    );
    assert_status(s.admin("POST", &restart, None).await, 404);
    assert_eq!(
        s.status_of(id).await,
        WorkspaceStatus::Removed,
        "a tombstone is never revived"
    );
}

async fn pause_resume_and_hibernate(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (root, _) = s.online_workspace("team").await;
    let child = s.create(json!({"name": "member", "parent_id": root})).await;
    s.backend().wait_for(|b| b.started(child) == 1).await;
    let route = |id: WorkspaceId, action: &str| format!("/workspaces/{id}/{action}");
    let paused = s.admin("POST", &route(root, "pause"), None).await;
    assert_json(paused, 200, json!({"status": "paused", "paused_count": 2}));
    assert_eq!(s.status_of(child).await, WorkspaceStatus::Paused);
    assert_eq!(s.backend().stopped(child), 1);
    let again = s.admin("POST", &route(root, "pause"), None).await;
    assert_error(again, 404, "workspace not found or already paused");
    // A paused parent blocks restarting and resuming the child.
    let resumed = s.admin("POST", &route(child, "resume"), None).await;
    assert_error(
        resumed,
        409,
        "parent workspace \"team\" is paused — resume it first",
    );
    // Automatic restarts skip paused workspaces.
    let before = s.backend().start_count();
    s.state
        .lifecycle
        .request_restart(child)
        .unwrap()
        .await
        .unwrap();
    assert_eq!(s.backend().start_count(), before);

    let resumed = s.admin("POST", &route(root, "resume"), None).await;
    assert_json(
        resumed,
        200,
        json!({"status": "provisioning", "resumed_count": 2}),
    );
    s.backend().wait_for(|b| b.started(child) == 2).await;

    let again = s.admin("POST", &route(root, "resume"), None).await;
    assert_error(again, 404, "workspace not found or not paused");
    let (status, reply) = s.admin("POST", &route(root, "hibernate"), None).await;
    assert_eq!(status, 404, "provisioning is not hibernatable: {reply}");
    let console = s.admin("GET", &route(root, "console"), None).await;
    assert_error(
        console,
        501,
        "console output unavailable on this deployment",
    );

    assert_status(s.admin("POST", &route(child, "pause"), None).await, 200);
    s.admin("POST", &route(root, "pause"), None).await;
    let (status, _) = s.admin("POST", &route(root, "restart"), None).await;
    assert_eq!(status, 409, "a paused workspace is resumed, not restarted");
    s.admin("POST", &route(root, "resume"), None).await;

    // A hibernation whose stop fails gives the claim back.
    let (napper, _) = s.online_workspace("napper").await;
    *s.backend().fail_stop.lock().unwrap() = true;
    let (status, _) = s.admin("POST", &route(napper, "hibernate"), None).await;
    assert_eq!(status, 503);
    assert_eq!(s.status_of(napper).await, WorkspaceStatus::Online);
    *s.backend().fail_stop.lock().unwrap() = false;

    let (id, token) = s.online_workspace("sleepy").await;
    s.heartbeat(Some(&token), json!({"workspace_id": id, "active_tasks": 2}))
        .await;
    let hibernate = route(id, "hibernate");
    let (status, reply) = s.call("POST", &hibernate, Some(&token), None).await;
    assert_eq!(status, 409);
    assert_eq!(reply["active_tasks"], 2);
    let forced = format!("{hibernate}?force=true");
    assert_status(s.call("POST", &forced, Some(&token), None).await, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Hibernated);
    assert!(s.state.lifecycle.wake(id).await.unwrap());
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Provisioning);
}

async fn idle_workspaces_hibernate_and_busy_ones_do_not(db: TestStore) {
    let s = TestServer::strict(db).await;
    let napper = json!({"name": "napper", "hibernation_idle_minutes": -1});
    let refused = s.admin("POST", "/workspaces", Some(napper)).await;
    assert_error(refused, 400, "hibernation_idle_minutes must be >= 0");
    let (idle, _) = s.online_workspace("idle").await;
    let (busy, busy_token) = s.online_workspace("busy").await;
    let (never, _) = s.online_workspace("never").await;
    for id in [idle, busy] {
        let path = format!("/workspaces/{id}");
        let ten = Some(json!({"hibernation_idle_minutes": 10}));
        assert_status(s.admin("PATCH", &path, ten).await, 200);
    }
    s.heartbeat(
        Some(&busy_token),
        json!({"workspace_id": busy, "active_tasks": 1}),
    )
    .await;
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        s.state.lifecycle.sweep_hibernation(now).await.unwrap(),
        0,
        "not idle long enough"
    );
    let later = now + time::Duration::minutes(11);
    assert_eq!(s.state.lifecycle.sweep_hibernation(later).await.unwrap(), 1);
    assert_eq!(s.status_of(idle).await, WorkspaceStatus::Hibernated);
    assert_eq!(
        s.status_of(busy).await,
        WorkspaceStatus::Online,
        "a running task keeps it awake"
    );
    assert_eq!(
        s.status_of(never).await,
        WorkspaceStatus::Online,
        "hibernation not enabled"
    );
    assert_eq!(s.backend().stopped(idle), 1);
}

async fn orphaned_compute_is_removed_and_console_is_served(db: TestStore) {
    let s = TestServer::strict(db).await;
    let live = s.create(json!({"name": "live"})).await;
    let gone = s.create(json!({"name": "gone"})).await;
    s.admin("DELETE", &format!("/workspaces/{gone}"), None)
        .await;
    let unknown = WorkspaceId::new();
    *s.backend().managed.lock().unwrap() = vec![live, gone, unknown];
    let stops_before = s.backend().stopped(gone);
    assert_eq!(s.state.lifecycle.sweep_orphans().await.unwrap(), 2);
    assert_eq!(
        s.backend().stopped(unknown),
        1,
        "left behind by a crashed server"
    );
    assert_eq!(s.backend().stopped(gone), stops_before + 1);
    assert_eq!(
        s.backend().stopped(live),
        0,
        "a live workspace is never an orphan"
    );

    *s.backend().console.lock().unwrap() = Some("booting...\nready".into());
    let console = s.admin("GET", &format!("/workspaces/{live}/console"), None);
    assert_json(console.await, 200, json!({"output": "booting...\nready"}));
    let none = s.admin("GET", &format!("/workspaces/{unknown}/console"), None);
    assert_status(none.await, 404);
}
