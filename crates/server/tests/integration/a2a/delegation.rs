//! Delegations through the proxy: recorded once per delegation and idempotent by key, queued
//! for a busy worker and completed by the drain; the routes refuse rows that do not exist.

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::started_online;
use crate::common::agent::TestAgent;
use crate::common::{TestServer, assert_error, assert_status, eventually, next_event_where};

molecule_store::on_both_backends!(
    a_delegation_runs_through_the_proxy_and_is_recorded,
    delegation_routes_refuse_missing_rows,
);

/// The delegation list entry of `id` (`null` when absent).
async fn delegation(s: &TestServer, lead: WorkspaceId, token: &str, id: &str) -> Value {
    let path = format!("/workspaces/{lead}/delegations");
    let list = assert_status(s.call("GET", &path, Some(token), None).await, 200);
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["delegation_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn a_delegation_runs_through_the_proxy_and_is_recorded(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (lead, lead_token) = s.registered("lead", &agent.url, None).await;
    let (worker, worker_token) = s.registered("worker", &agent.url, Some(lead)).await;
    let path = format!("/workspaces/{lead}/delegate");
    let delegate = async |body: Value| s.call("POST", &path, Some(&lead_token), Some(body)).await;
    let to_itself = delegate(json!({"target_id": lead, "task": "x"})).await;
    assert_error(to_itself, 400, "self-delegation not permitted");
    let to_nobody = delegate(json!({"target_id": "nope", "task": "x"})).await;
    assert_error(to_nobody, 400, "target_id must be a valid UUID");
    let body = json!({"target_id": worker, "task": "summarise", "idempotency_key": "k-1"});
    let reply = assert_status(delegate(body.clone()).await, 202);
    let delegation_id = reply["delegation_id"].as_str().unwrap().to_owned();
    eventually("the delegation completes", || async {
        delegation(&s, lead, &lead_token, &delegation_id).await["status"] == "completed"
    })
    .await;
    let list = format!("/workspaces/{lead}/delegations");
    let (_, list) = s.call("GET", &list, Some(&lead_token), None).await;
    let entries: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["delegation_id"] == delegation_id.as_str())
        .collect();
    assert_eq!(entries.len(), 1, "one entry per delegation: {list}");
    assert_eq!(entries[0]["response_preview"], "echo: summarise");
    // The message went as the lead, with the delegation id as its messageId.
    assert_eq!(agent.deliveries_of(&delegation_id), 1);
    // The same key again: the same delegation, nothing sent.
    let reply = assert_status(delegate(body).await, 200);
    assert_eq!(reply["idempotent_hit"], true);
    assert_eq!(reply["delegation_id"], delegation_id.as_str());
    assert_eq!(agent.deliveries_of(&delegation_id), 1);

    // A busy worker: queued, then completed by the drain.
    s.report_tasks(worker, &worker_token, 1).await;
    let reply = delegate(json!({"target_id": worker, "task": "later"})).await;
    let queued_id = assert_status(reply, 202)["delegation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the delegation is queued", || async {
        delegation(&s, lead, &lead_token, &queued_id).await["status"] == "queued"
    })
    .await;
    let mut events = s.events();
    s.report_tasks(worker, &worker_token, 0).await;
    eventually("the drained delegation completes", || async {
        delegation(&s, lead, &lead_token, &queued_id).await["status"] == "completed"
    })
    .await;
    let complete = next_event_where(&mut events, "DELEGATION_COMPLETE", |e| {
        e.event == "DELEGATION_COMPLETE" && e.payload["delegation_id"] == queued_id.as_str()
    });
    assert_eq!(complete.await.payload["via"], "queue_drain");
    assert_eq!(agent.deliveries_of(&queued_id), 1);
}

/// The delegation routes answer 404 for a workspace or delegation that does not exist, and
/// record or send nothing (issue 11).
async fn delegation_routes_refuse_missing_rows(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (source, _) = started_online(&s, "lead", "http://93.184.216.34:1").await;
    let unknown = WorkspaceId::new();
    let task =
        |target: WorkspaceId| json!({"target_id": target, "task": "t", "delegation_id": "d-1"});
    let cases = [
        (
            format!("/workspaces/{unknown}/delegate"),
            task(source),
            "workspace not found",
        ),
        (
            format!("/workspaces/{source}/delegate"),
            task(unknown),
            "target workspace not found",
        ),
        (
            format!("/workspaces/{unknown}/delegations/record"),
            task(source),
            "workspace not found",
        ),
        (
            format!("/workspaces/{source}/delegations/record"),
            task(unknown),
            "target workspace not found",
        ),
        (
            format!("/workspaces/{source}/delegations/nope/update"),
            json!({"status": "completed", "response_preview": "x"}),
            "delegation not found",
        ),
        (
            format!("/workspaces/{unknown}/delegations/nope/update"),
            json!({"status": "failed"}),
            "delegation not found",
        ),
    ];
    let mut events = s.events();
    for (path, body, error) in cases {
        let (status, reply) = s.admin("POST", &path, Some(body)).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (404, Some(error)),
            "{path}"
        );
    }
    for ws in [source, unknown] {
        let rows = s.activity_of(ws).await;
        assert!(rows.is_empty(), "nothing recorded for {ws}: {rows:?}");
    }
    while let Ok(e) = events.try_recv() {
        assert!(!e.event.starts_with("DELEGATION"), "{}", e.event);
    }
}
