//! The workspace, registry and token routes over real HTTP against the real router, on both
//! databases, with a recording Provisioner double standing in for a backend.

use molecule_store::on_both_backends;

use crate::common::{ADMIN, Options, TestServer};
use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::Running;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

on_both_backends!(
    create_provisions_from_the_whole_row_and_register_brings_it_online,
    create_validates_everything_before_writing,
    create_without_backend_fails_with_a_clear_reason,
    external_workspaces_wait_for_their_agent,
    register_never_creates_and_always_needs_a_credential,
    a_registering_agent_brings_its_workspace_online,
    dev_mode_registration_onboards_an_unknown_agent,
    heartbeats_drive_the_status,
    missed_heartbeats_go_offline_and_restart,
    unknown_running_check_changes_nothing,
    delete_removes_the_subtree_and_stops_every_member,
    restart_is_refused_for_removed_and_coalesces,
    pause_resume_and_hibernate,
    patch_validates_and_applies_in_one_transaction,
    get_answers_410_for_removed_and_hides_operator_fields,
    tokens_routes,
    budget_routes_and_bootstrap_failed,
    provision_failure_hides_backend_text,
    idle_workspaces_hibernate_and_busy_ones_do_not,
    collapse_removes_the_children_subtrees,
    expand_creates_and_provisions_the_template_team,
    oversized_bodies_are_refused,
    orphaned_compute_is_removed_and_console_is_served,
);

async fn server(db: TestStore) -> TestServer {
    TestServer::start(
        db,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await
}

async fn create_provisions_from_the_whole_row_and_register_brings_it_online(db: TestStore) {
    let s = server(db).await;
    let parent = s.create(json!({"name": "lead"})).await;
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            Some(ADMIN),
            Some(json!({"name": "researcher", "role": "reads", "tier": 2, "runtime": "claude-code", "parent_id": parent})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["status"], "provisioning");
    let id: WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(reply["awareness_namespace"], format!("workspace:{id}"));
    assert_eq!(reply["workspace_access"], "none");

    // The background provision reaches the backend with the whole row.
    let mut events = s.state.events.subscribe();
    s.backend().wait_for(|b| b.started(id) == 1).await;
    let request = s
        .backend()
        .starts
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.workspace_id == id)
        .cloned()
        .unwrap();
    assert_eq!(request.name, "researcher");
    assert_eq!(request.role.as_deref(), Some("reads"));
    assert_eq!(request.parent_id, Some(parent));
    assert_eq!(request.runtime, "claude-code");
    assert_eq!(request.tier.number(), 2);
    assert_eq!(request.platform_url, "http://platform.test:8080");
    let token = request.auth_token.clone().expect("a token for the agent");
    assert!(request.platform_inbound_secret.is_some());
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Provisioning);

    // The agent registers with the token it was given.
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(token.expose()),
            Some(json!({"id": id, "url": "http://agent.test:8000", "agent_card": {"name": "researcher"}})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "registered");
    assert_eq!(reply["delivery_mode"], "push");
    assert!(reply.get("auth_token").is_none(), "it already has a token");
    assert_eq!(reply["platform_inbound_secret"].as_str().unwrap().len(), 43);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    let online = next_event(&mut events, "WORKSPACE_ONLINE", id).await;
    assert_eq!(online["payload"]["agent_card"]["name"], "researcher");

    let (status, list) = s.call("GET", "/workspaces", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let item = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == json!(id))
        .unwrap();
    assert_eq!(item["status"], "online");
    assert_eq!(item["parent_id"], json!(parent));
    let recorded = s.state.store.events().recent(Some(id), 10).await.unwrap();
    let types: Vec<_> = recorded.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["WORKSPACE_ONLINE", "WORKSPACE_PROVISIONING"]);
}

async fn create_validates_everything_before_writing(db: TestStore) {
    let s = server(db).await;
    let cases: &[(Value, &str)] = &[
        (json!({}), "invalid workspace payload"),
        (json!({"name": ""}), "invalid workspace payload"),
        (json!({"name": 5}), "invalid workspace payload"),
        (json!({"name": "a{b"}), "invalid workspace fields"),
        (
            json!({"name": "ok", "role": "x\ny"}),
            "invalid workspace fields",
        ),
        (
            json!({"name": "ok", "tier": 7}),
            "tier must be between 1 and 4",
        ),
        (
            json!({"name": "ok", "tier": "2"}),
            "invalid workspace payload",
        ),
        (
            json!({"name": "ok", "runtime": "nosuch"}),
            "unknown runtime \"nosuch\"",
        ),
        (
            json!({"name": "ok", "workspace_dir": "/etc/x"}),
            "invalid workspace directory",
        ),
        (
            json!({"name": "ok", "workspace_dir": "rel"}),
            "invalid workspace directory",
        ),
        (
            json!({"name": "ok", "workspace_access": "read_only"}),
            "invalid workspace access",
        ),
        (
            json!({"name": "ok", "delivery_mode": "pull"}),
            "delivery_mode must be 'push' or 'poll'",
        ),
        (
            json!({"name": "ok", "parent_id": "nope"}),
            "invalid parent_id",
        ),
        (
            json!({"name": "ok", "parent_id": WorkspaceId::new()}),
            "parent workspace not found",
        ),
        (
            json!({"name": "ok", "budget_limit": -1}),
            "budget_limit must be >= 0 (USD cents)",
        ),
        (
            json!({"name": "ok", "template": "../etc"}),
            "invalid template",
        ),
    ];
    for (body, message) in cases {
        let (status, reply) = s
            .call("POST", "/workspaces", Some(ADMIN), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["error"], *message, "{body}");
    }
    let (status, _) = s
        .call_raw("POST", "/workspaces", Some(ADMIN), "{not json")
        .await;
    assert_eq!(status, 400);
    assert!(
        s.state.store.workspaces().list().await.unwrap().is_empty(),
        "nothing written"
    );
    assert_eq!(s.backend().start_count(), 0);
}

async fn create_without_backend_fails_with_a_clear_reason(db: TestStore) {
    let s = TestServer::start(
        db,
        Options {
            backend: false,
            dev: false,
        },
    )
    .await;
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            Some(ADMIN),
            Some(json!({"name": "lonely"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        reply["status"], "failed",
        "the response tells the real outcome"
    );
    let id: WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
    let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(ws.status, WorkspaceStatus::Failed);
    assert!(
        ws.last_sample_error
            .unwrap()
            .starts_with("no provisioning backend available")
    );
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/restart"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(reply["error"], "provisioner not available");
}

async fn external_workspaces_wait_for_their_agent(db: TestStore) {
    let s = server(db).await;
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            Some(ADMIN),
            Some(json!({"name": "byo", "external": true})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["status"], "awaiting_agent");
    let id: WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
    let token = reply["connection"]["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 43);
    assert!(
        reply["connection"]["registry_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/registry/register")
    );
    assert_eq!(s.status_of(id).await, WorkspaceStatus::AwaitingAgent);
    assert_eq!(
        s.backend().start_count(),
        0,
        "external workspaces have no backend"
    );

    // Restart is a no-op and never touches tokens.
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/restart"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["status"], "noop");
    let (status, _) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(json!({"id": id, "delivery_mode": "poll", "agent_card": {}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);

    // With a URL it is online at once.
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            Some(ADMIN),
            Some(json!({"name": "byo2", "runtime": "external", "url": "https://agent.example"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(reply["status"], "online");
    // It has its credential from the start: nobody else can register in its place.
    let id: WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
    let token = reply["connection"]["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 43);
    let takeover =
        json!({"id": id, "url": "http://93.184.216.34:9", "agent_card": {"name": "evil"}});
    let (status, reply) = s
        .call("POST", "/registry/register", None, Some(takeover.clone()))
        .await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply.get("auth_token").is_none());
    let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(ws.url.as_deref(), Some("https://agent.example"), "URL kept");
    let (status, reply) = s
        .call("POST", "/registry/register", Some(&token), Some(takeover))
        .await;
    assert_eq!(status, 200, "{reply}");
}

async fn register_never_creates_and_always_needs_a_credential(db: TestStore) {
    let s = server(db).await;
    let unknown = WorkspaceId::new();
    let card = json!({"name": "x"});
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            None,
            Some(json!({"id": unknown, "url": "http://a:1", "agent_card": card})),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
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
        let (status, _) = s.call("POST", "/registry/register", None, Some(bad)).await;
        assert_eq!(status, 400);
    }

    // A workspace with no token (its provisioning failed before one was issued, or an older
    // database) cannot be taken over: without a credential bound to it, registration is 401
    // and nothing changes (Decision 2).
    let id = s
        .state
        .store
        .workspaces()
        .create(molecule_store::NewWorkspace::named("legacy"))
        .await
        .unwrap()
        .id;
    for bearer in [None, Some(ADMIN), Some("not-a-token")] {
        let (status, reply) = s
            .call(
                "POST",
                "/registry/register",
                bearer,
                Some(json!({"id": id, "url": "http://93.184.216.34:1", "agent_card": card})),
            )
            .await;
        assert_eq!(status, 401, "{bearer:?}: {reply}");
        assert!(reply.get("auth_token").is_none());
    }
    for path in ["/registry/heartbeat", "/registry/update-card"] {
        let (status, _) = s
            .call(
                "POST",
                path,
                None,
                Some(json!({"workspace_id": id, "agent_card": card})),
            )
            .await;
        assert_eq!(status, 401, "{path}");
    }
    let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!((ws.url, ws.agent_card), (None, None), "nothing was written");
    assert_eq!(s.state.store.tokens().count_live(id).await.unwrap(), 0);
    // The operator mints a token for it; the agent registers with that.
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/tokens"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let token = reply["auth_token"].as_str().unwrap().to_owned();
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(json!({"id": id, "url": "ftp://a", "agent_card": card})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"],
        "url scheme must be http or https, got \"ftp\""
    );
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(json!({"id": id, "agent_card": card})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "url is required for push-mode workspaces");
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
        let (status, reply) = s
            .call(
                "POST",
                "/registry/register",
                Some(&token),
                Some(json!({"id": id, "url": url, "agent_card": card})),
            )
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(error)),
            "{url}"
        );
    }
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(json!({"id": id, "url": "http://93.184.216.34:1", "agent_card": card})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.get("auth_token").is_none(), "it has its token");
    // Afterwards the token is required, and only this workspace's.
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            None,
            Some(json!({"id": id, "url": "http://a:1", "agent_card": card})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("missing workspace auth token"))
    );
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(ADMIN),
            Some(json!({"id": id, "url": "http://a:1", "agent_card": card})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("invalid workspace auth token"))
    );
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(json!({"id": id, "url": "http://93.184.216.34:1", "agent_card": card})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        reply.get("auth_token").is_none(),
        "re-registration never re-issues"
    );
    let (status, _) = s
        .call(
            "POST",
            "/registry/update-card",
            Some(&token),
            Some(json!({"workspace_id": id, "agent_card": {"name": "new"}})),
        )
        .await;
    assert_eq!(status, 200);
    let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(ws.agent_card, Some(json!({"name": "new"})));
}

/// An agent that registers is alive: a `failed` workspace comes back `online` with its event
/// (issue 14 item 1); paused stays paused (the operator's choice); after deletion the agent's
/// token is refused with 401 like any revoked token (item 6).
async fn a_registering_agent_brings_its_workspace_online(db: TestStore) {
    let s = server(db).await;
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
    let mut events = s.state.events.subscribe();
    let card = json!({"name": "phoenix"});
    let register = json!({"id": id, "url": "http://93.184.216.34:8000", "agent_card": card});
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(register.clone()),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    let online = next_event(&mut events, "WORKSPACE_ONLINE", id).await;
    assert_eq!(online["payload"]["agent_card"], card);
    // Paused is the operator's decision: a registration does not undo it.
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/pause"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(register.clone()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Paused);
    // Deleted: its agent's token is dead everywhere (401, as the runtime expects).
    let (status, _) = s
        .call(
            "DELETE",
            &format!("/workspaces/{id}?confirm=true"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200);
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
    let s = TestServer::start(
        db,
        Options {
            backend: true,
            dev: true,
        },
    )
    .await;
    let id = WorkspaceId::new();
    // A registration that is invalid creates nothing.
    let (status, _) = s
        .call(
            "POST",
            "/registry/register",
            None,
            Some(json!({"id": id, "url": "ftp://x", "agent_card": {"name": "local-bot"}})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(s.state.store.workspaces().get(id).await.unwrap().is_none());
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            None,
            Some(
                json!({"id": id, "url": "http://127.0.0.1:9", "agent_card": {"name": "local-bot"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let token = reply["auth_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(ws.name, "local-bot");
    assert_eq!(ws.runtime.as_str(), "external");
    assert_eq!(ws.status, WorkspaceStatus::Online);
    assert_eq!(ws.url.as_deref(), Some("http://127.0.0.1:9"));
    // From now on it needs that token, and a poll-mode agent without a card name is named by
    // its id.
    let (status, _) = s
        .call(
            "POST",
            "/registry/register",
            None,
            Some(json!({"id": id, "url": "http://127.0.0.1:9", "agent_card": {}})),
        )
        .await;
    assert_eq!(status, 401);
    let poller = WorkspaceId::new();
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            None,
            Some(json!({"id": poller, "agent_card": {}, "delivery_mode": "poll"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let ws = s
        .state
        .store
        .workspaces()
        .get(poller)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ws.name, poller.to_string());
    assert_eq!(ws.delivery_mode, molecule_domain::DeliveryMode::Poll);
}

async fn heartbeats_drive_the_status(db: TestStore) {
    let s = server(db).await;
    let (id, token) = online_workspace(&s, "hb").await;
    let beat = |extra: Value| {
        let mut body = json!({"workspace_id": id, "active_tasks": 1, "uptime_seconds": 9});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let mut events = s.state.events.subscribe();
    let (status, reply) = s
        .call(
            "POST",
            "/registry/heartbeat",
            Some(&token),
            Some(beat(json!({"current_task": "t1"}))),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "ok");
    assert!(reply["platform_inbound_secret"].is_string());
    next_event(&mut events, "TASK_UPDATED", id).await;
    next_event(&mut events, "WORKSPACE_HEARTBEAT", id).await;

    s.call(
        "POST",
        "/registry/heartbeat",
        Some(&token),
        Some(beat(json!({"error_rate": 0.7, "sample_error": "boom"}))),
    )
    .await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Degraded);
    s.call(
        "POST",
        "/registry/heartbeat",
        Some(&token),
        Some(beat(json!({"error_rate": 0.05}))),
    )
    .await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    s.call(
        "POST",
        "/registry/heartbeat",
        Some(&token),
        Some(beat(json!({"runtime_state": "wedged"}))),
    )
    .await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Degraded);

    let (status, _) = s
        .call(
            "POST",
            "/registry/heartbeat",
            Some(&token),
            Some(json!({"workspace_id": id, "active_tasks": "many"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .call("POST", "/registry/heartbeat", None, Some(beat(json!({}))))
        .await;
    assert_eq!(status, 401);
}

async fn missed_heartbeats_go_offline_and_restart(db: TestStore) {
    let s = server(db).await;
    let (id, _) = online_workspace(&s, "silent").await;
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
    let types: Vec<_> = s
        .state
        .store
        .events()
        .recent(Some(id), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(types.contains(&"WORKSPACE_OFFLINE".to_owned()), "{types:?}");

    // An external workspace goes to awaiting_agent and is not restarted.
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            Some(ADMIN),
            Some(json!({"name": "ext", "external": true})),
        )
        .await;
    assert_eq!(status, 201);
    let ext: WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
    let token = reply["connection"]["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.call(
        "POST",
        "/registry/heartbeat",
        Some(&token),
        Some(json!({"workspace_id": ext})),
    )
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
    let s = server(db).await;
    let (id, _) = online_workspace(&s, "flaky").await;
    let starts = s.backend().started(id);
    s.backend()
        .running_answers
        .lock()
        .unwrap()
        .push_back(Running::Unknown("daemon timeout".into()));
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 0);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    s.backend()
        .running_answers
        .lock()
        .unwrap()
        .push_back(Running::Yes);
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 0);
    assert_eq!(s.backend().started(id), starts, "no restart");
    s.backend()
        .running_answers
        .lock()
        .unwrap()
        .push_back(Running::No);
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 1);
    s.backend().wait_for(|b| b.started(id) == starts + 1).await;
}

async fn delete_removes_the_subtree_and_stops_every_member(db: TestStore) {
    let s = server(db).await;
    let root = s.create(json!({"name": "root"})).await;
    let child = s.create(json!({"name": "child", "parent_id": root})).await;
    let grandchild = s.create(json!({"name": "gc", "parent_id": child})).await;
    let token = s.state.store.tokens().issue(grandchild).await.unwrap();
    let (status, reply) = s
        .call("DELETE", &format!("/workspaces/{root}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["status"], "confirmation_required");
    assert_eq!(reply["children_count"], 1);
    assert_eq!(
        s.status_of(child).await,
        WorkspaceStatus::Provisioning,
        "nothing removed"
    );

    let (status, reply) = s
        .call(
            "DELETE",
            &format!("/workspaces/{root}?confirm=true"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"status": "removed", "cascade_deleted": 2}));
    for id in [root, child, grandchild] {
        assert_eq!(s.status_of(id).await, WorkspaceStatus::Removed);
        assert_eq!(s.backend().stopped(id), 1, "every member is stopped once");
    }
    assert!(
        !s.state
            .store
            .tokens()
            .validate(grandchild, &token.token)
            .await
            .unwrap()
    );
    let (status, _) = s
        .call("DELETE", &format!("/workspaces/{root}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 404, "deleting again: not found");
    let (status, _) = s
        .call(
            "DELETE",
            &format!("/workspaces/{}", WorkspaceId::new()),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, reply) = s
        .call("DELETE", "/workspaces/not-a-uuid", Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid workspace ID"))
    );

    let lone = s.create(json!({"name": "lone"})).await;
    let (status, reply) = s
        .call(
            "DELETE",
            &format!("/workspaces/{lone}?purge=true"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["status"], "purged");
    assert!(
        s.state
            .store
            .workspaces()
            .get(lone)
            .await
            .unwrap()
            .is_none()
    );
}

async fn restart_is_refused_for_removed_and_coalesces(db: TestStore) {
    let s = server(db).await;
    let (id, token) = online_workspace(&s, "busy").await;
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
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/restart"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("invalid workspace auth token"))
    );
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/restart"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "provisioning");
    let (status, _) = s
        .call("DELETE", &format!("/workspaces/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/restart"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(
        s.status_of(id).await,
        WorkspaceStatus::Removed,
        "a tombstone is never revived"
    );
}

async fn pause_resume_and_hibernate(db: TestStore) {
    let s = server(db).await;
    let (root, _) = online_workspace(&s, "team").await;
    let child = s.create(json!({"name": "member", "parent_id": root})).await;
    s.backend().wait_for(|b| b.started(child) == 1).await;
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{root}/pause"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"status": "paused", "paused_count": 2}));
    assert_eq!(s.status_of(child).await, WorkspaceStatus::Paused);
    assert_eq!(s.backend().stopped(child), 1);
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{root}/pause"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("workspace not found or already paused"))
    );
    // A paused parent blocks restarting and resuming the child.
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{child}/resume"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(
        reply["error"],
        "parent workspace \"team\" is paused — resume it first"
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

    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{root}/resume"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"status": "provisioning", "resumed_count": 2}));
    s.backend().wait_for(|b| b.started(child) == 2).await;

    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{root}/resume"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("workspace not found or not paused"))
    );
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{root}/hibernate"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404, "provisioning is not hibernatable: {reply}");
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{root}/console"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (501, Some("console output unavailable on this deployment"))
    );

    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{child}/pause"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    s.call(
        "POST",
        &format!("/workspaces/{root}/pause"),
        Some(ADMIN),
        None,
    )
    .await;
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{root}/restart"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 409, "a paused workspace is resumed, not restarted");
    s.call(
        "POST",
        &format!("/workspaces/{root}/resume"),
        Some(ADMIN),
        None,
    )
    .await;

    // A hibernation whose stop fails gives the claim back.
    let (napper, _) = online_workspace(&s, "napper").await;
    *s.backend().fail_stop.lock().unwrap() = true;
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{napper}/hibernate"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(s.status_of(napper).await, WorkspaceStatus::Online);
    *s.backend().fail_stop.lock().unwrap() = false;

    let (id, token) = online_workspace(&s, "sleepy").await;
    s.call(
        "POST",
        "/registry/heartbeat",
        Some(&token),
        Some(json!({"workspace_id": id, "active_tasks": 2})),
    )
    .await;
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/hibernate"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(reply["active_tasks"], 2);
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/hibernate?force=true"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Hibernated);
    assert!(s.state.lifecycle.wake(id).await.unwrap());
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Provisioning);
}

async fn patch_validates_and_applies_in_one_transaction(db: TestStore) {
    let s = server(db).await;
    let a = s.create(json!({"name": "a"})).await;
    let b = s.create(json!({"name": "b", "parent_id": a})).await;
    let path = format!("/workspaces/{a}");
    let bad: &[(Value, &str)] = &[
        (
            json!({"name": "x\ny"}),
            "name must not contain newline characters",
        ),
        (
            json!({"name": "bad|name"}),
            "name contains invalid characters",
        ),
        (json!({"name": 5}), "name must be a string"),
        (
            json!({"role": "r".repeat(1001)}),
            "role must be at most 1000 characters",
        ),
        (json!({"tier": 9}), "tier must be between 1 and 4"),
        (json!({"parent_id": b}), "parent_id would create a cycle"),
        (json!({"parent_id": a}), "parent_id would create a cycle"),
        (json!({"parent_id": "zzz"}), "invalid parent_id"),
        (json!({"runtime": "nosuch"}), "unknown runtime \"nosuch\""),
        (
            json!({"workspace_dir": "/proc"}),
            "invalid workspace directory",
        ),
        (json!({"x": 1}), "x and y must be given together"),
        (json!({"collapsed": "yes"}), "collapsed must be a boolean"),
    ];
    for (body, message) in bad {
        // Every bad body also carries a valid change, which must not be written either.
        let mut body = body.clone();
        body.as_object_mut()
            .unwrap()
            .entry("role")
            .or_insert(json!("should not stick"));
        let (status, reply) = s
            .call("PATCH", &path, Some(ADMIN), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["error"], *message, "{body}");
    }
    let ws = s.state.store.workspaces().get(a).await.unwrap().unwrap();
    assert_eq!(ws.role, None, "nothing half-written");
    let (status, reply) = s
        .call("PATCH", &path, Some(ADMIN), Some(json!({"name": "A", "tier": 4, "x": 3.5, "y": 4, "collapsed": true, "workspace_dir": "/srv/a", "budget_limit": 9, "unknown": 1})))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"status": "updated", "needs_restart": true}));
    let (_, list) = s.call("GET", "/workspaces", Some(ADMIN), None).await;
    let item = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == json!(a))
        .unwrap()
        .clone();
    assert_eq!(
        (
            item["name"].clone(),
            item["tier"].clone(),
            item["x"].clone(),
            item["collapsed"].clone()
        ),
        (json!("A"), json!(4), json!(3.5), json!(true))
    );
    assert_eq!(
        item["budget_limit"],
        Value::Null,
        "PATCH never changes the budget"
    );
    let (status, _) = s
        .call(
            "PATCH",
            &format!("/workspaces/{}", WorkspaceId::new()),
            Some(ADMIN),
            Some(json!({"name": "n"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s.call_raw("PATCH", &path, Some(ADMIN), "[1,2]").await;
    assert_eq!(status, 400);
}

async fn get_answers_410_for_removed_and_hides_operator_fields(db: TestStore) {
    let s = server(db).await;
    let id = s.create(json!({"name": "g", "budget_limit": 100})).await;
    let (status, reply) = s
        .call("GET", &format!("/workspaces/{id}"), None, None)
        .await;
    assert_eq!(status, 200);
    for hidden in [
        "budget_limit",
        "monthly_spend",
        "current_task",
        "last_sample_error",
        "workspace_dir",
    ] {
        assert!(reply.get(hidden).is_none(), "{hidden} is shown");
    }
    assert!(reply.get("last_outbound_at").is_some());
    let (status, reply) = s.call("GET", "/workspaces/xyz", None, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid workspace ID"))
    );
    let (status, _) = s
        .call(
            "GET",
            &format!("/workspaces/{}", WorkspaceId::new()),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    s.call("DELETE", &format!("/workspaces/{id}"), Some(ADMIN), None)
        .await;
    let (status, reply) = s
        .call("GET", &format!("/workspaces/{id}"), None, None)
        .await;
    assert_eq!(status, 410);
    assert_eq!(reply["error"], "workspace removed");
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}?include_removed=true"),
            None,
            None,
        )
        .await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("removed")));
    let (status, reply) = s
        .call("GET", &format!("/workspaces/{id}/state"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        reply,
        json!({"workspace_id": id, "status": "removed", "deleted": true})
    );
}

async fn tokens_routes(db: TestStore) {
    let s = server(db).await;
    let id = s.create(json!({"name": "t"})).await;
    // Provisioning revokes every older token: issue ours after it.
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/tokens"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let token = reply["auth_token"].as_str().unwrap().to_owned();
    assert_eq!(
        reply["message"],
        "Save this token now — it cannot be retrieved again."
    );
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/tokens"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let listed = reply["tokens"].as_array().unwrap();
    assert_eq!(reply["count"], listed.len());
    let mine = listed
        .iter()
        .find(|t| t["prefix"] == json!(&token[..8]))
        .unwrap();
    assert!(mine.get("token_hash").is_none() && mine.get("auth_token").is_none());
    let token_id = mine["id"].as_str().unwrap().to_owned();
    let (status, reply) = s
        .call(
            "DELETE",
            &format!("/workspaces/{id}/tokens/{token_id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("revoked")));
    let (status, reply) = s
        .call(
            "DELETE",
            &format!("/workspaces/{id}/tokens/{token_id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("token not found or already revoked"))
    );
    let (status, _) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/tokens"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 401, "a revoked token stops working at once");

    // The test-token route needs the admin token outside dev mode.
    let (status, _) = s
        .call(
            "GET",
            &format!("/admin/workspaces/{id}/test-token"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, reply) = s
        .call(
            "GET",
            &format!("/admin/workspaces/{id}/test-token"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["workspace_id"], json!(id));
    let (status, _) = s
        .call(
            "GET",
            &format!("/admin/workspaces/{}/test-token", WorkspaceId::new()),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

async fn budget_routes_and_bootstrap_failed(db: TestStore) {
    let s = server(db).await;
    let id = s.create(json!({"name": "b"})).await;
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/budget"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"budget_limit": null, "monthly_spend": 0, "budget_remaining": null})
    );
    let path = format!("/workspaces/{id}/budget");
    for (body, message) in [
        (json!({}), "budget_limit field is required"),
        (
            json!({"budget_limit": -5}),
            "budget_limit must be >= 0 (USD cents)",
        ),
        (
            json!({"budget_limit": "5"}),
            "budget_limit must be an integer (USD cents) or null",
        ),
    ] {
        let (status, reply) = s.call("PATCH", &path, Some(ADMIN), Some(body)).await;
        assert_eq!((status, reply["error"].as_str()), (400, Some(message)));
    }
    let (status, reply) = s
        .call(
            "PATCH",
            &path,
            Some(ADMIN),
            Some(json!({"budget_limit": 250.9})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"budget_limit": 250, "monthly_spend": 0, "budget_remaining": 250})
    );

    let long = "x".repeat(10_000);
    let (status, reply) = s
        .call(
            "POST",
            &format!("/admin/workspaces/{id}/bootstrap-failed"),
            Some(ADMIN),
            Some(json!({"error": "", "log_tail": long})),
        )
        .await;
    assert_eq!((status, reply.clone()), (200, json!({"ok": true})));
    let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(ws.status, WorkspaceStatus::Failed);
    let reason = ws.last_sample_error.unwrap();
    assert!(reason.starts_with("bootstrap failed — see log_tail\n\n...(truncated)...\n"));
    assert!(reason.len() <= 8192);
    let (status, reply) = s
        .call(
            "POST",
            &format!("/admin/workspaces/{id}/bootstrap-failed"),
            Some(ADMIN),
            Some(json!({"error": "again"})),
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"ok": true, "no_change": true}))
    );
}

async fn provision_failure_hides_backend_text(db: TestStore) {
    let s = server(db).await;
    *s.backend().fail_start.lock().unwrap() = true;
    // Subscribed before the create: the failure follows the start at once.
    let mut events = s.state.events.subscribe();
    let id = s.create(json!({"name": "doomed"})).await;
    s.backend().wait_for(|b| b.started(id) == 1).await;
    let failed = next_event(&mut events, "WORKSPACE_PROVISION_FAILED", id).await;
    assert_eq!(failed["payload"]["error"], "workspace start failed");
    let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(ws.status, WorkspaceStatus::Failed);
    assert_eq!(
        ws.last_sample_error.as_deref(),
        Some("workspace start failed")
    );
    let (_, list) = s.call("GET", "/workspaces", Some(ADMIN), None).await;
    assert!(!list.to_string().contains("secret internal detail"));
}

/// Creates a workspace, waits for its provision and registers it; returns id and token.
async fn online_workspace(s: &TestServer, name: &str) -> (WorkspaceId, String) {
    let id = s.create(json!({"name": name})).await;
    let token = s.backend().token_of(id).await;
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(json!({"id": id, "url": "http://agent.test:8000", "agent_card": {"name": name}})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    (id, token)
}

/// The next event of this type about this workspace.
async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<molecule_server::events::Envelope>>,
    event: &str,
    id: WorkspaceId,
) -> Value {
    let wait = async {
        loop {
            let env = rx.recv().await.unwrap();
            if env.event == event && env.workspace_id == id.to_string() {
                return serde_json::to_value(&*env).unwrap();
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .expect("event not received in time")
}

async fn idle_workspaces_hibernate_and_busy_ones_do_not(db: TestStore) {
    let s = server(db).await;
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            Some(ADMIN),
            Some(json!({"name": "napper", "hibernation_idle_minutes": -1})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("hibernation_idle_minutes must be >= 0"))
    );
    let (idle, _) = online_workspace(&s, "idle").await;
    let (busy, busy_token) = online_workspace(&s, "busy").await;
    let (never, _) = online_workspace(&s, "never").await;
    for id in [idle, busy] {
        let (status, _) = s
            .call(
                "PATCH",
                &format!("/workspaces/{id}"),
                Some(ADMIN),
                Some(json!({"hibernation_idle_minutes": 10})),
            )
            .await;
        assert_eq!(status, 200);
    }
    s.call(
        "POST",
        "/registry/heartbeat",
        Some(&busy_token),
        Some(json!({"workspace_id": busy, "active_tasks": 1})),
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

async fn collapse_removes_the_children_subtrees(db: TestStore) {
    let s = server(db).await;
    let root = s.create(json!({"name": "root"})).await;
    let child = s.create(json!({"name": "child", "parent_id": root})).await;
    let grandchild = s.create(json!({"name": "gc", "parent_id": child})).await;
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{root}/collapse"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"status": "collapsed", "removed": ["child"]}));
    for id in [child, grandchild] {
        assert_eq!(s.status_of(id).await, WorkspaceStatus::Removed);
        assert_eq!(s.backend().stopped(id), 1);
    }
    assert_ne!(s.status_of(root).await, WorkspaceStatus::Removed);
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{}/collapse", WorkspaceId::new()),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

async fn oversized_bodies_are_refused(db: TestStore) {
    let s = server(db).await;
    let huge = json!({"name": "big", "role": "r".repeat(2 * 1024 * 1024)});
    let (status, _) = s.call("POST", "/workspaces", Some(ADMIN), Some(huge)).await;
    assert_eq!(status, 413);
    assert!(s.state.store.workspaces().list().await.unwrap().is_empty());
}

async fn expand_creates_and_provisions_the_template_team(db: TestStore) {
    let configs = tempfile::tempdir().unwrap();
    let team = configs.path().join("research-lead");
    std::fs::create_dir_all(&team).unwrap();
    std::fs::write(
        team.join("config.yaml"),
        "name: Research Lead\nsub_workspaces:\n  - name: Reader\n    role: reads papers\n  - config: writer\n  - name: \"bad|name\"\n",
    )
    .unwrap();
    let dir = configs.path().to_path_buf();
    let s = TestServer::start_configured(
        db,
        Options {
            backend: true,
            dev: false,
        },
        move |st| st.with_configs_dir(Some(dir)),
    )
    .await;
    let lead = s.create(json!({"name": "Research Lead", "tier": 2})).await;
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{lead}/expand"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "expanded");
    let children = reply["children"].as_array().unwrap();
    let names: Vec<_> = children
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Reader", "writer"], "invalid entries are skipped");
    for child in children {
        let id: WorkspaceId = child["id"].as_str().unwrap().parse().unwrap();
        // Started through the same lifecycle path as create, with the parent's tier.
        s.backend().wait_for(|b| b.started(id) == 1).await;
        let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
        assert_eq!((ws.parent_id, ws.tier), (Some(lead), 2));
    }
    let orphan = s.create(json!({"name": "No Template"})).await;
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{orphan}/expand"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("no config found for workspace"))
    );
}

async fn orphaned_compute_is_removed_and_console_is_served(db: TestStore) {
    let s = server(db).await;
    let live = s.create(json!({"name": "live"})).await;
    let gone = s.create(json!({"name": "gone"})).await;
    s.call("DELETE", &format!("/workspaces/{gone}"), Some(ADMIN), None)
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
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{live}/console"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"output": "booting...\nready"}))
    );
    let (status, _) = s
        .call(
            "GET",
            &format!("/workspaces/{unknown}/console"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404);
}
