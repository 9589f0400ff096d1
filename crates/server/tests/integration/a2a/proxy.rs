//! A message through the proxy: delivered and answered (also streamed, event by event), each
//! step of the pipeline failing with its own status, and a dead or hibernated target.

use std::time::Duration;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::Running;
use molecule_store::testing::TestStore;
use serde_json::json;

use super::{a2a, message, online_at};
use crate::common::agent::{Answer, TestAgent};
use crate::common::{ADMIN, TestServer, assert_status, eventually, next_event_where};

molecule_store::on_both_backends!(
    a_message_reaches_the_agent_and_its_answer_comes_back,
    each_pipeline_step_fails_with_its_own_status,
    a_streamed_answer_is_relayed_event_by_event,
    a_dead_target_is_restarted_exactly_once,
    a_hibernated_target_is_woken_by_a_message,
);

async fn a_message_reaches_the_agent_and_its_answer_comes_back(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (target, _) = s.registered("echo", &agent.url, None).await;
    let mut events = s.events();
    // A v0.2 body without the JSON-RPC envelope: normalised before delivery.
    let body = json!({"method": "message/send", "params": {"message": {"role": "user", "content": "hello"}}});
    let reply = a2a(&s, target, None, None, &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["result"]["parts"][0]["text"], "echo: hello");
    let got = agent.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["jsonrpc"], "2.0");
    assert!(got[0]["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(got[0]["params"]["message"]["parts"][0]["text"], "hello");
    assert!(got[0]["params"]["message"].get("content").is_none());
    // The target's activity row, from the user (no source).
    let rows = s.activity_of(target).await;
    let row = rows
        .iter()
        .find(|r| r.activity_type == "a2a_receive")
        .expect("an a2a_receive row");
    assert_eq!(row.source_id, None);
    assert_eq!(row.status, "ok");
    assert_eq!(row.method.as_deref(), Some("message/send"));
    assert_eq!(row.summary.as_deref(), Some("message/send → echo"));
    // The canvas hears the answer.
    let answer = next_event_where(&mut events, "A2A_RESPONSE", |e| e.event == "A2A_RESPONSE");
    assert_eq!(
        answer.await.payload["response_body"]["result"]["parts"][0]["text"],
        "echo: hello"
    );
    // A deadline beyond what a clock can hold is no deadline, never a panic.
    let resp = s
        .http
        .post(format!("{}/workspaces/{target}/a2a", s.base))
        .header("X-Timeout", "18446744073709551615")
        .body(message("t-1", "far"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

async fn each_pipeline_step_fails_with_its_own_status(db: TestStore) {
    let s = TestServer::strict(db).await;
    let store = &s.state.store;
    let parent_a = s.create(json!({"name": "a"})).await;
    let parent_b = s.create(json!({"name": "b"})).await;
    let child_a = s.create(json!({"name": "a1", "parent_id": parent_a})).await;
    let child_b = s.create(json!({"name": "b1", "parent_id": parent_b})).await;
    // Provisioning issues each workspace its token (revoking older ones): wait for it.
    for id in [parent_a, parent_b, child_a, child_b] {
        s.backend().wait_for(|b| b.started(id) == 1).await;
    }
    let token_a = store.tokens().issue(child_a).await.unwrap().token;
    let token_b = store.tokens().issue(child_b).await.unwrap().token;
    let msg = message("m-1", "hi");
    let as_child_a = child_a.to_string();
    let as_child_a = Some(as_child_a.as_str());

    // A system caller id never comes from a header.
    let r = a2a(
        &s,
        parent_a,
        Some("system:restart-context"),
        Some(ADMIN),
        &msg,
    )
    .await;
    r.assert_error(403, "invalid caller ID");
    // No identity at all.
    let r = a2a(&s, parent_a, None, None, &msg).await;
    r.assert_error(401, "missing caller auth token");
    // A token proves only its own workspace.
    let r = a2a(&s, parent_a, as_child_a, Some(token_b.expose()), &msg).await;
    r.assert_error(401, "invalid caller auth token");
    let r = a2a(&s, parent_a, as_child_a, None, &msg).await;
    r.assert_error(401, "missing caller auth token");
    let r = a2a(&s, parent_a, None, Some("not-a-token"), &msg).await;
    r.assert_error(401, "invalid caller auth token");
    // Cousins may not talk; the bearer alone names the caller.
    let r = a2a(&s, child_b, None, Some(token_a.expose()), &msg).await;
    r.assert_error(
        403,
        "access denied: workspaces cannot communicate per hierarchy rules",
    );
    // Budget before payload.
    let workspaces = store.workspaces();
    workspaces
        .set_budget_limit(parent_a, Some(0))
        .await
        .unwrap();
    let r = a2a(&s, parent_a, as_child_a, Some(token_a.expose()), "not json").await;
    r.assert_error(402, "workspace budget limit exceeded");
    workspaces.set_budget_limit(parent_a, None).await.unwrap();
    // Payload.
    let r = a2a(&s, parent_a, None, Some(ADMIN), "not json").await;
    r.assert_error(400, "invalid JSON");
    let bad =
        json!({"method": "message/send", "params": {"message": {"role": "user", "content": true}}});
    let r = a2a(&s, parent_a, None, Some(ADMIN), &bad.to_string()).await;
    r.assert_error(400, "invalid params.message.content type");
    assert!(r.body["hint"].as_str().is_some());
    // Unknown target.
    let r = a2a(&s, WorkspaceId::new(), None, Some(ADMIN), &msg).await;
    r.assert_error(404, "workspace not found");
    // A provisioning workspace has no URL yet.
    workspaces.set_url(parent_b, None).await.unwrap();
    let r = a2a(&s, parent_b, None, Some(ADMIN), &msg).await;
    r.assert_error(503, "workspace has no URL");
    // The parent may talk to its child with its own token; the agent URL is a closed port
    // published by the (fake) backend: refused → 502.
    let token_pa = store.tokens().issue(parent_a).await.unwrap().token;
    let as_parent_a = parent_a.to_string();
    let r = a2a(
        &s,
        child_a,
        Some(&as_parent_a),
        Some(token_pa.expose()),
        &msg,
    )
    .await;
    r.assert_error(502, "failed to reach workspace agent");
}

/// An agent's `text/event-stream` answer reaches the caller event by event (the agent sends
/// its second event only after the test has read the first through the proxy), with its
/// content type, and the stream leaves one activity row when it ends.
async fn a_streamed_answer_is_relayed_event_by_event(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (target, _) = s.registered("streamer", &agent.url, None).await;
    let event = |n: u32, state: &str| {
        json!({"jsonrpc": "2.0", "id": "s-1", "result": {"kind": "status-update", "taskId": "t",
               "contextId": "c", "final": state == "completed", "status": {"state": state},
               "metadata": {"n": n}}})
    };
    let events = vec![
        event(1, "working"),
        event(2, "working"),
        event(3, "completed"),
    ];
    agent.answer(Answer::Stream(events.clone()));
    let body = json!({"jsonrpc": "2.0", "id": "s-1", "method": "message/stream",
        "params": {"message": {"role": "user", "messageId": "m-s", "parts": [{"kind": "text", "text": "go"}]}}});
    let mut resp = s
        .http
        .post(format!("{}/workspaces/{target}/a2a", s.base))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    // The first event arrives while the agent still holds the others back.
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the first event is relayed before the stream ends")
        .unwrap()
        .unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert_eq!(first, format!("data: {}\n\n", events[0]));
    agent.release(2);
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(
        rest,
        format!("data: {}\n\ndata: {}\n\n", events[1], events[2])
    );
    // One activity row when the stream ended, whose answer is the last event.
    let received = |r: &molecule_store::ActivityRow| r.activity_type == "a2a_receive";
    eventually("the stream's activity row", || async {
        s.activity_of(target).await.iter().any(|r| {
            received(r) && r.status == "ok" && r.response_body.as_ref() == Some(&events[2])
        })
    })
    .await;
    let rows = s.activity_of(target).await;
    assert_eq!(rows.iter().filter(|r| received(r)).count(), 1);
}

async fn a_dead_target_is_restarted_exactly_once(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let id = s.create_dev(json!({"name": "fragile"})).await;
    s.backend().wait_for(|b| b.started(id) == 1).await;
    // The platform published the agent's address and the agent is online.
    online_at(&s, id, &agent.url).await;
    agent.answer(Answer::Status(503, json!({"error": "origin down"})));
    // The compute is gone.
    s.backend().answer_running(Running::No);
    let r = a2a(&s, id, None, None, &message("x-1", "are you there")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["restarting"], true);
    assert_eq!(r.retry_after.as_deref(), Some("15"));
    s.backend().wait_for(|b| b.started(id) == 2).await;
    assert_eq!(s.backend().start_count(), 2, "one restart");
    // Once the restart published its address, the agent is back (at the test's address).
    eventually("the restart published its URL", || async {
        let ws = s.row(id).await;
        ws.url.is_some_and(|u| u.starts_with("http://127.0.0.1:1/"))
    })
    .await;
    // A running compute answering 503 is passed through, with no restart.
    online_at(&s, id, &agent.url).await;
    let r = a2a(&s, id, None, None, &message("x-2", "again")).await;
    r.assert_error(503, "origin down");
    assert_eq!(s.backend().started(id), 2);
}

async fn a_hibernated_target_is_woken_by_a_message(db: TestStore) {
    let s = TestServer::dev(db).await;
    let id = s.create_dev(json!({"name": "sleeper"})).await;
    s.backend().wait_for(|b| b.started(id) == 1).await;
    s.set_status(id, WorkspaceStatus::Online).await;
    let hibernate = format!("/workspaces/{id}/hibernate");
    assert_status(s.call("POST", &hibernate, None, None).await, 200);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Hibernated);
    let r = a2a(&s, id, None, None, &message("w-1", "wake up")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["waking"], true);
    assert_eq!(r.retry_after.as_deref(), Some("15"));
    s.backend().wait_for(|b| b.started(id) == 2).await;
}
