//! The registry: registration needs a credential bound to the workspace and never creates one
//! (outside dev mode), a registering agent brings its workspace online, and heartbeats drive
//! the status.

use molecule_domain::{DeliveryMode, WorkspaceId, WorkspaceStatus};
use molecule_store::testing::TestStore;
use molecule_store::{NewWorkspace, on_both_backends};
use serde_json::{Value, json};

use crate::common::{ADMIN, TestServer, assert_error, assert_status, next_event};

on_both_backends!(
    register_never_creates_and_always_needs_a_credential,
    a_registering_agent_brings_its_workspace_online,
    dev_mode_registration_onboards_an_unknown_agent,
    heartbeats_drive_the_status,
);

async fn register_never_creates_and_always_needs_a_credential(db: TestStore) {
    let s = TestServer::strict(db).await;
    let unknown = WorkspaceId::new();
    let card = json!({"name": "x"});
    let at = |id: WorkspaceId, url: &str| json!({"id": id, "url": url, "agent_card": card});
    assert_status(s.register(None, at(unknown, "http://a:1")).await, 404);
    assert!(
        s.state
            .store
            .workspaces()
            .get(unknown)
            .await
            .unwrap()
            .is_none()
    );

    for bad in [
        json!({}),
        json!({"id": "nope", "agent_card": {}}),
        json!({"id": unknown}),
    ] {
        let (status, _) = s.register(None, bad).await;
        assert_eq!(status, 400);
    }

    // A workspace with no token (its provisioning failed before one was issued, or an older
    // database) cannot be taken over: without a credential bound to it, registration is 401
    // and nothing changes (Decision 2).
    let id = s
        .state
        .store
        .workspaces()
        .create(NewWorkspace::named("legacy"))
        .await
        .unwrap()
        .id;
    for bearer in [None, Some(ADMIN), Some("not-a-token")] {
        let (status, reply) = s.register(bearer, at(id, "http://93.184.216.34:1")).await;
        assert_eq!(status, 401, "{bearer:?}: {reply}");
        assert!(reply.get("auth_token").is_none());
    }
    for path in ["/registry/heartbeat", "/registry/update-card"] {
        let body = json!({"workspace_id": id, "agent_card": card});
        let (status, _) = s.call("POST", path, None, Some(body)).await;
        assert_eq!(status, 401, "{path}");
    }
    let ws = s.row(id).await;
    assert_eq!((ws.url, ws.agent_card), (None, None), "nothing was written");
    assert_eq!(s.state.store.tokens().count_live(id).await.unwrap(), 0);
    // The operator mints a token for it; the agent registers with that.
    let minted = s.admin("POST", &format!("/workspaces/{id}/tokens"), None);
    let minted = assert_status(minted.await, 201);
    let token = Some(minted["auth_token"].as_str().unwrap());
    assert_error(
        s.register(token, at(id, "ftp://a")).await,
        400,
        "url scheme must be http or https, got \"ftp\"",
    );
    assert_error(
        s.register(token, json!({"id": id, "agent_card": card}))
            .await,
        400,
        "url is required for push-mode workspaces",
    );
    // The address policy: an unresolvable name, loopback and the metadata address are refused.
    for (url, error) in [
        (
            "http://a:1",
            "hostname \"a\" cannot be resolved (DNS error)",
        ),
        (
            "http://127.0.0.1:1",
            "url targets a blocked address: loopback 127.0.0.0/8",
        ),
        (
            "http://169.254.169.254/",
            "url targets a blocked address: link-local 169.254.0.0/16 (cloud metadata)",
        ),
    ] {
        let (status, reply) = s.register(token, at(id, url)).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(error)),
            "{url}"
        );
    }
    let reply = assert_status(
        s.register(token, at(id, "http://93.184.216.34:1")).await,
        200,
    );
    assert!(reply.get("auth_token").is_none(), "it has its token");
    // Afterwards the token is required, and only this workspace's.
    let elsewhere = at(id, "http://a:1");
    let missing = s.register(None, elsewhere.clone()).await;
    assert_error(missing, 401, "missing workspace auth token");
    let invalid = s.register(Some(ADMIN), elsewhere).await;
    assert_error(invalid, 401, "invalid workspace auth token");
    let reply = assert_status(
        s.register(token, at(id, "http://93.184.216.34:1")).await,
        200,
    );
    assert!(
        reply.get("auth_token").is_none(),
        "re-registration never re-issues"
    );
    let update = json!({"workspace_id": id, "agent_card": {"name": "new"}});
    assert_status(
        s.call("POST", "/registry/update-card", token, Some(update))
            .await,
        200,
    );
    assert_eq!(s.row(id).await.agent_card, Some(json!({"name": "new"})));
}

/// An agent that registers is alive: a `failed` workspace comes back `online` with its event
/// (issue 14 item 1); paused stays paused (the operator's choice); after deletion the agent's
/// token is refused with 401 like any revoked token (item 6).
async fn a_registering_agent_brings_its_workspace_online(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "phoenix"})).await;
    let token = s.backend().token_of(id).await;
    // The provision timed out, say; then the agent comes up after all.
    s.state
        .store
        .workspaces()
        .transition(
            id,
            WorkspaceStatus::Failed,
            Some(&[WorkspaceStatus::Provisioning]),
        )
        .await
        .unwrap();
    let mut events = s.events();
    let card = json!({"name": "phoenix"});
    let register = json!({"id": id, "url": "http://93.184.216.34:8000", "agent_card": card});
    assert_status(s.register(Some(&token), register.clone()).await, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    let online = next_event(&mut events, "WORKSPACE_ONLINE", id).await;
    assert_eq!(online["payload"]["agent_card"], card);
    // Paused is the operator's decision: a registration does not undo it.
    assert_status(
        s.admin("POST", &format!("/workspaces/{id}/pause"), None)
            .await,
        200,
    );
    assert_status(s.register(Some(&token), register.clone()).await, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Paused);
    // Deleted: its agent's token is dead everywhere (401, as the runtime expects).
    let delete = s.admin("DELETE", &format!("/workspaces/{id}?confirm=true"), None);
    assert_status(delete.await, 200);
    for (path, body) in [
        ("/registry/register", register),
        ("/registry/heartbeat", json!({"workspace_id": id})),
        (
            "/registry/update-card",
            json!({"workspace_id": id, "agent_card": card}),
        ),
    ] {
        let (status, reply) = s.call("POST", path, Some(&token), Some(body)).await;
        assert_eq!(status, 401, "{path}: {reply}");
    }
}

/// Dev mode only: an agent registering an id the server has never seen gets its external
/// workspace created, named after its card, and its token (issue 14 item 2).
async fn dev_mode_registration_onboards_an_unknown_agent(db: TestStore) {
    let s = TestServer::dev(db).await;
    let id = WorkspaceId::new();
    // A registration that is invalid creates nothing.
    let invalid = json!({"id": id, "url": "ftp://x", "agent_card": {"name": "local-bot"}});
    assert_status(s.register(None, invalid).await, 400);
    assert!(s.state.store.workspaces().get(id).await.unwrap().is_none());
    let body = json!({"id": id, "url": "http://127.0.0.1:9", "agent_card": {"name": "local-bot"}});
    let reply = assert_status(s.register(None, body).await, 200);
    let token = reply["auth_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    let ws = s.row(id).await;
    assert_eq!(ws.name, "local-bot");
    assert_eq!(ws.runtime.as_str(), "external");
    assert_eq!(ws.status, WorkspaceStatus::Online);
    assert_eq!(ws.url.as_deref(), Some("http://127.0.0.1:9"));
    // From now on it needs that token, and a poll-mode agent without a card name is named by
    // its id.
    let again = json!({"id": id, "url": "http://127.0.0.1:9", "agent_card": {}});
    assert_status(s.register(None, again).await, 401);
    let poller = WorkspaceId::new();
    let poll = json!({"id": poller, "agent_card": {}, "delivery_mode": "poll"});
    assert_status(s.register(None, poll).await, 200);
    let ws = s.row(poller).await;
    assert_eq!(ws.name, poller.to_string());
    assert_eq!(ws.delivery_mode, DeliveryMode::Poll);
}

async fn heartbeats_drive_the_status(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (id, token) = s.online_workspace("hb").await;
    let token = Some(token.as_str());
    let beat = |extra: Value| {
        let mut body = json!({"workspace_id": id, "active_tasks": 1, "uptime_seconds": 9});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let mut events = s.events();
    let first = s
        .heartbeat(token, beat(json!({"current_task": "t1"})))
        .await;
    let reply = assert_status(first, 200);
    assert_eq!(reply["status"], "ok");
    assert!(reply["platform_inbound_secret"].is_string());
    next_event(&mut events, "TASK_UPDATED", id).await;
    next_event(&mut events, "WORKSPACE_HEARTBEAT", id).await;

    let failing = json!({"error_rate": 0.7, "sample_error": "boom"});
    s.heartbeat(token, beat(failing)).await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Degraded);
    s.heartbeat(token, beat(json!({"error_rate": 0.05}))).await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    s.heartbeat(token, beat(json!({"runtime_state": "wedged"})))
        .await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Degraded);

    let bad = json!({"workspace_id": id, "active_tasks": "many"});
    assert_status(s.heartbeat(token, bad).await, 400);
    assert_status(s.heartbeat(None, beat(json!({}))).await, 401);
}
