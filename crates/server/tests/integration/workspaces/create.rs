//! Creating a workspace: the provision from the whole row and the agent's registration, the
//! validation before anything is written, external workspaces, and what a failed provision
//! shows.

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::{
    ADMIN, AGENT_URL, Options, TestServer, assert_error, assert_status, connection_of, id_of,
    next_event,
};

on_both_backends!(
    create_provisions_from_the_whole_row_and_register_brings_it_online,
    create_validates_everything_before_writing,
    create_without_backend_fails_with_a_clear_reason,
    external_workspaces_wait_for_their_agent,
    provision_failure_hides_backend_text,
    oversized_bodies_are_refused,
);

async fn create_provisions_from_the_whole_row_and_register_brings_it_online(db: TestStore) {
    let s = TestServer::strict(db).await;
    let parent = s.create(json!({"name": "lead"})).await;
    let body = json!({"name": "researcher", "role": "reads", "tier": 2, "runtime": "claude-code", "parent_id": parent});
    let reply = assert_status(s.admin("POST", "/workspaces", Some(body)).await, 201);
    assert_eq!(reply["status"], "provisioning");
    let id = id_of(&reply);
    assert_eq!(reply["awareness_namespace"], format!("workspace:{id}"));
    assert_eq!(reply["workspace_access"], "none");

    // The background provision reaches the backend with the whole row.
    let mut events = s.events();
    s.backend().wait_for(|b| b.started(id) == 1).await;
    let request = s.backend().starts_of(id).remove(0);
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
    let register = json!({"id": id, "url": AGENT_URL, "agent_card": {"name": "researcher"}});
    let reply = assert_status(s.register(Some(token.expose()), register).await, 200);
    assert_eq!(reply["status"], "registered");
    assert_eq!(reply["delivery_mode"], "push");
    assert!(reply.get("auth_token").is_none(), "it already has a token");
    assert_eq!(reply["platform_inbound_secret"].as_str().unwrap().len(), 43);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    let online = next_event(&mut events, "WORKSPACE_ONLINE", id).await;
    assert_eq!(online["payload"]["agent_card"]["name"], "researcher");

    let list = assert_status(s.admin("GET", "/workspaces", None).await, 200);
    let item = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == json!(id))
        .unwrap();
    assert_eq!(item["status"], "online");
    assert_eq!(item["parent_id"], json!(parent));
    // The provisioning steps in between are `workspaces::progress`'s subject.
    let recorded: Vec<String> = s
        .event_types_of(id)
        .await
        .into_iter()
        .filter(|t| t != "WORKSPACE_PROVISION_PROGRESS")
        .collect();
    assert_eq!(recorded, ["WORKSPACE_ONLINE", "WORKSPACE_PROVISIONING"]);
}

async fn create_validates_everything_before_writing(db: TestStore) {
    let s = TestServer::strict(db).await;
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
        let (status, reply) = s.admin("POST", "/workspaces", Some(body.clone())).await;
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
    let options = Options {
        backend: false,
        ..Options::STRICT
    };
    let s = TestServer::start(db, options).await;
    let lonely = Some(json!({"name": "lonely"}));
    let reply = assert_status(s.admin("POST", "/workspaces", lonely).await, 201);
    assert_eq!(
        reply["status"], "failed",
        "the response tells the real outcome"
    );
    let id = id_of(&reply);
    let ws = s.row(id).await;
    assert_eq!(ws.status, WorkspaceStatus::Failed);
    assert!(
        ws.last_sample_error
            .unwrap()
            .starts_with("no provisioning backend available")
    );
    let restart = s.admin("POST", &format!("/workspaces/{id}/restart"), None);
    assert_error(restart.await, 503, "provisioner not available");
}

async fn external_workspaces_wait_for_their_agent(db: TestStore) {
    let s = TestServer::strict(db).await;
    let reply = s
        .create_reply(json!({"name": "byo", "external": true}))
        .await;
    assert_eq!(reply["status"], "awaiting_agent");
    let (id, token) = connection_of(&reply);
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
    let restart = s.call(
        "POST",
        &format!("/workspaces/{id}/restart"),
        Some(&token),
        None,
    );
    assert_eq!(assert_status(restart.await, 200)["status"], "noop");
    let poll = json!({"id": id, "delivery_mode": "poll", "agent_card": {}});
    assert_status(s.register(Some(&token), poll).await, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);

    // With a URL it is online at once.
    let reply = s
        .create_reply(
            json!({"name": "byo2", "runtime": "external", "url": "https://agent.example"}),
        )
        .await;
    assert_eq!(reply["status"], "online");
    // It has its credential from the start: nobody else can register in its place.
    let (id, token) = connection_of(&reply);
    assert_eq!(token.len(), 43);
    let takeover =
        json!({"id": id, "url": "http://93.184.216.34:9", "agent_card": {"name": "evil"}});
    let reply = assert_status(s.register(None, takeover.clone()).await, 401);
    assert!(reply.get("auth_token").is_none());
    let ws = s.row(id).await;
    assert_eq!(ws.url.as_deref(), Some("https://agent.example"), "URL kept");
    assert_status(s.register(Some(&token), takeover).await, 200);
}

async fn provision_failure_hides_backend_text(db: TestStore) {
    let s = TestServer::strict(db).await;
    *s.backend().fail_start.lock().unwrap() = true;
    // Subscribed before the create: the failure follows the start at once.
    let mut events = s.events();
    let id = s.create(json!({"name": "doomed"})).await;
    s.backend().wait_for(|b| b.started(id) == 1).await;
    let failed = next_event(&mut events, "WORKSPACE_PROVISION_FAILED", id).await;
    assert_eq!(failed["payload"]["error"], "workspace start failed");
    let ws = s.row(id).await;
    assert_eq!(ws.status, WorkspaceStatus::Failed);
    assert_eq!(
        ws.last_sample_error.as_deref(),
        Some("workspace start failed")
    );
    let (_, list) = s.admin("GET", "/workspaces", None).await;
    assert!(!list.to_string().contains("secret internal detail"));
}

async fn oversized_bodies_are_refused(db: TestStore) {
    let s = TestServer::strict(db).await;
    let huge = json!({"name": "big", "role": "r".repeat(2 * 1024 * 1024)});
    let (status, _) = s.admin("POST", "/workspaces", Some(huge)).await;
    assert_eq!(status, 413);
    assert!(s.state.store.workspaces().list().await.unwrap().is_empty());
}
