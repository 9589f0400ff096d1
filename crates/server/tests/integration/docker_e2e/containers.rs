//! One workspace in one real container: its whole life (create, A2A through the server,
//! restart keeping the volume, pause, resume, delete), a failed provision nobody can take
//! over, a killed container brought back, and the orphan sweep.

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::names::{config_volume_name, container_name};
use molecule_provisioner_api::{ProvisionRequest, Provisioner, Running, SecretValue};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use super::{Cleanup, SERIAL, container, docker, docker_cli, echo, online, server, volume_exists};
use crate::common::{assert_status, next_event, provision_request};

on_both_backends!(
    a_workspace_lives_in_a_real_container,
    a_failed_docker_workspace_cannot_be_taken_over,
);

/// The path of a workspace route.
fn route(id: WorkspaceId, action: &str) -> String {
    format!("/workspaces/{id}/{action}")
}

/// Provisioning that fails before the agent's token reaches its config volume leaves a
/// workspace nobody may register without a credential (the attack of issue 11: an
/// unauthenticated register of such a workspace used to hand out its token and secrets).
async fn a_failed_docker_workspace_cannot_be_taken_over(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    // A global secret sealed with another key (a database moved without its key): every
    // provision fails at the secrets, before any token is issued or written.
    (*db)
        .clone()
        .with_secret_key(Some(molecule_store::SecretKey::generate().unwrap()))
        .secrets()
        .set_global("OPENAI_API_KEY", "sealed-with-another-key")
        .await
        .unwrap();
    let s = server(db, docker().await).await;
    let id = s
        .create(json!({"name": "doomed", "runtime": "langgraph"}))
        .await;
    cleanup.add(id);
    let ws = s
        .wait_row(id, "failed", |w| w.status == WorkspaceStatus::Failed)
        .await;
    assert!(container(id).is_none(), "nothing was started");
    assert_eq!(s.state.store.tokens().count_live(id).await.unwrap(), 0);

    let takeover =
        json!({"id": id, "url": "http://93.184.216.34:8000", "agent_card": {"name": "x"}});
    for bearer in [None, Some("x".repeat(43))] {
        let (status, reply) = s.register(bearer.as_deref(), takeover.clone()).await;
        assert_eq!(status, 401, "{bearer:?}: {reply}");
        assert!(reply.get("auth_token").is_none(), "{reply}");
        assert!(reply.get("platform_inbound_secret").is_none(), "{reply}");
    }
    let after = s.row(id).await;
    assert_eq!(after.status, WorkspaceStatus::Failed);
    assert_eq!((after.url, after.agent_card), (ws.url, ws.agent_card));
    assert_eq!(s.state.store.tokens().count_live(id).await.unwrap(), 0);
}

async fn a_workspace_lives_in_a_real_container(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let backend = docker().await;
    let s = server(db, backend.clone()).await;

    // Create → a container of our image → the agent registers → online.
    let id = s
        .create(json!({"name": "e2e-echo", "runtime": "langgraph", "tier": 2}))
        .await;
    cleanup.add(id);
    let ws = online(&s, id).await;
    let url = ws.url.clone().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "the published loopback URL is kept: {url}"
    );
    let (first, running) = container(id).expect("a container");
    assert!(running);
    assert_eq!(backend.running(id, None).await, Running::Yes);

    // An A2A call through the server reaches the agent and comes back.
    assert!(
        echo(&s, id, "hello through the platform")
            .await
            .contains("hello through the platform")
    );

    // A file in the config volume, to see that restart keeps the volume.
    let marker = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(marker.path(), "kept").unwrap();
    let cp = docker_cli(&[
        "cp",
        marker.path().to_str().unwrap(),
        &format!("{}:/configs/marker", container_name(id)),
    ]);
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );

    // Restart → a new container, the config volume kept, online again.
    let (status, reply) = s.admin("POST", &route(id, "restart"), None).await;
    assert!(status < 300, "{status} {reply}");
    s.wait_row(id, "online in a new container", |w| {
        w.status == WorkspaceStatus::Online
            && container(id).is_some_and(|(c, running)| c != first && running)
    })
    .await;
    assert_eq!(
        backend.read_file(id, "/configs/marker").await.unwrap(),
        b"kept"
    );
    assert!(
        echo(&s, id, "after restart")
            .await
            .contains("after restart")
    );

    // Pause → the container is gone, the volume stays.
    assert_status(s.admin("POST", &route(id, "pause"), None).await, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Paused);
    assert!(container(id).is_none(), "paused: no container");
    assert!(volume_exists(&config_volume_name(id)));

    // Resume → back online, the volume still holding its file.
    assert_status(s.admin("POST", &route(id, "resume"), None).await, 200);
    online(&s, id).await;
    assert!(container(id).is_some_and(|(_, running)| running));
    assert_eq!(
        backend.read_file(id, "/configs/marker").await.unwrap(),
        b"kept"
    );
    assert!(echo(&s, id, "after resume").await.contains("after resume"));

    // Delete → the container and the volumes are gone.
    assert_status(
        s.admin("DELETE", &format!("/workspaces/{id}"), None).await,
        200,
    );
    assert!(container(id).is_none(), "deleted: no container");
    assert!(
        !volume_exists(&config_volume_name(id)),
        "deleted: no config volume"
    );
}

#[tokio::test]
async fn a_killed_container_comes_back_online() {
    let db = TestStore::sqlite().await;
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let backend = docker().await;
    let s = server(db, backend.clone()).await;
    let id = s.create(json!({"name": "e2e-killed", "tier": 2})).await;
    cleanup.add(id);
    online(&s, id).await;
    let (first, _) = container(id).unwrap();
    assert_eq!(
        s.state.lifecycle.sweep_health().await.unwrap(),
        0,
        "running: nothing to do"
    );

    // Killed by hand: the health sweep sees it not running → offline → auto-restart.
    let mut events = s.events();
    let kill = docker_cli(&["kill", &container_name(id)]);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    assert_eq!(backend.running(id, None).await, Running::No);
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 1);
    next_event(&mut events, "WORKSPACE_OFFLINE", id).await;
    s.wait_row(id, "online again in a new container", |w| {
        w.status == WorkspaceStatus::Online
            && container(id).is_some_and(|(c, running)| c != first && running)
    })
    .await;
    assert!(echo(&s, id, "back").await.contains("back"));

    assert_status(
        s.admin("DELETE", &format!("/workspaces/{id}"), None).await,
        200,
    );
}

#[tokio::test]
async fn a_container_left_behind_is_removed_by_the_orphan_sweep() {
    let db = TestStore::sqlite().await;
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let backend = docker().await;
    let s = server(db, backend.clone()).await;
    // A live workspace, whose container must survive the sweep.
    let live = s.create(json!({"name": "e2e-live", "tier": 2})).await;
    cleanup.add(live);
    online(&s, live).await;
    // A container a crashed server left behind: managed, but no row knows it.
    let orphan = WorkspaceId::new();
    cleanup.add(orphan);
    let left_behind = ProvisionRequest {
        auth_token: Some(SecretValue::new("tok")),
        ..provision_request(orphan, "left-behind", "http://127.0.0.1:9")
    };
    backend.start(&left_behind).await.unwrap();
    assert!(container(orphan).is_some());
    assert!(volume_exists(&config_volume_name(orphan)));

    assert_eq!(s.state.lifecycle.sweep_orphans().await.unwrap(), 1);
    assert!(
        container(orphan).is_none(),
        "the orphan's container is removed"
    );
    assert!(
        !volume_exists(&config_volume_name(orphan)),
        "and its volume"
    );
    assert!(
        container(live).is_some_and(|(_, running)| running),
        "the live one stays"
    );
    assert_eq!(s.status_of(live).await, WorkspaceStatus::Online);

    // A removed workspace's container is an orphan too.
    s.state
        .store
        .workspaces()
        .remove_all(&[live])
        .await
        .unwrap();
    assert_eq!(s.state.lifecycle.sweep_orphans().await.unwrap(), 1);
    assert!(container(live).is_none());
}
