//! Provisioning progress: a create emits `WORKSPACE_PROVISION_PROGRESS` events (`{step,
//! status}`) for the backend's steps and the agent's registration, in order, broadcast (what
//! `/ws` and SSE relay) and recorded (`GET /events/:id`); a failed start reports its step
//! failed. Both databases, the recording backend (whose start is one `container` step).

use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::{AGENT_URL, TestServer, assert_status, next_event};

on_both_backends!(
    steps_are_broadcast_and_recorded,
    a_failed_start_reports_its_step
);

const PROGRESS: &str = "WORKSPACE_PROVISION_PROGRESS";

fn step(event: &Value) -> (String, String) {
    let payload = &event["payload"];
    (
        payload["step"].as_str().unwrap().to_owned(),
        payload["status"].as_str().unwrap().to_owned(),
    )
}

fn expected(steps: &[(&str, &str)]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn steps_are_broadcast_and_recorded(db: TestStore) {
    let s = TestServer::strict(db).await;
    let mut events = s.events();
    let id = s.create(json!({"name": "progress"})).await;
    let token = s.backend().token_of(id).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(step(&next_event(&mut events, PROGRESS, id).await));
    }
    let body = json!({"id": id, "url": AGENT_URL, "agent_card": {"name": "progress"}});
    assert_status(s.register(Some(&token), body).await, 200);
    seen.push(step(&next_event(&mut events, PROGRESS, id).await));
    let steps = expected(&[
        ("container", "started"),
        ("container", "done"),
        ("registration", "started"),
        ("registration", "done"),
    ]);
    assert_eq!(seen, steps);

    // Recorded: the event log shows the same, newest first.
    let log = assert_status(s.admin("GET", &format!("/events/{id}"), None).await, 200);
    let mut recorded: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == PROGRESS)
        .map(step)
        .collect();
    recorded.reverse();
    assert_eq!(recorded, steps);
}

async fn a_failed_start_reports_its_step(db: TestStore) {
    let s = TestServer::strict(db).await;
    *s.backend().fail_start.lock().unwrap() = true;
    let mut events = s.events();
    let id = s.create(json!({"name": "doomed"})).await;
    let first = step(&next_event(&mut events, PROGRESS, id).await);
    let second = step(&next_event(&mut events, PROGRESS, id).await);
    assert_eq!(
        vec![first, second],
        expected(&[("container", "started"), ("container", "failed")])
    );
    next_event(&mut events, "WORKSPACE_PROVISION_FAILED", id).await;
}
