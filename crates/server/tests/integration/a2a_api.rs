//! The A2A proxy over real HTTP: a real server, real agents on loopback, both databases.

use std::time::Duration;

use crate::common::agent::{Answer, TestAgent};
use crate::common::{ADMIN, Options, TestServer};
use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::Running;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

/// A reply: status, `Retry-After`, JSON body.
struct Answered {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

/// `POST /workspaces/:target/a2a` with optional caller header and bearer.
async fn a2a(
    s: &TestServer,
    target: WorkspaceId,
    caller: Option<&str>,
    token: Option<&str>,
    body: &str,
) -> Answered {
    let mut req = s
        .http
        .post(format!("{}/workspaces/{target}/a2a", s.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(c) = caller {
        req = req.header("X-Workspace-ID", c);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    Answered {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn message(id: &str, text: &str) -> String {
    json!({
        "method": "message/send",
        "params": { "message": { "role": "user", "messageId": id, "parts": [{"kind": "text", "text": text}] } },
    })
    .to_string()
}

/// An external workspace (dev mode) and the token it was created with.
async fn external(
    s: &TestServer,
    name: &str,
    parent: Option<WorkspaceId>,
) -> (WorkspaceId, String) {
    let mut body = json!({ "name": name, "runtime": "external" });
    if let Some(p) = parent {
        body["parent_id"] = json!(p);
    }
    let (status, reply) = s.call("POST", "/workspaces", None, Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    let id = reply["id"].as_str().unwrap().parse().unwrap();
    let token = reply["connection"]["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, token)
}

/// An external workspace registered at `url` (dev mode), with its token.
async fn registered(
    s: &TestServer,
    name: &str,
    url: &str,
    parent: Option<WorkspaceId>,
) -> (WorkspaceId, String) {
    let (id, token) = external(s, name, parent).await;
    let body =
        json!({ "id": id, "url": url, "agent_card": {"name": name}, "delivery_mode": "push" });
    let (status, reply) = s
        .call("POST", "/registry/register", Some(&token), Some(body))
        .await;
    assert_eq!(status, 200, "{reply}");
    (id, token)
}

async fn heartbeat(s: &TestServer, id: WorkspaceId, token: &str, active_tasks: i64) {
    let (status, reply) = s
        .call(
            "POST",
            "/registry/heartbeat",
            Some(token),
            Some(json!({ "workspace_id": id, "active_tasks": active_tasks })),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
}

/// Polls `done` until it holds (up to 20 s).
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn dev(db: TestStore) -> TestServer {
    TestServer::start(
        db,
        Options {
            backend: true,
            dev: true,
        },
    )
    .await
}

async fn a_message_reaches_the_agent_and_its_answer_comes_back(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let (target, _) = registered(&s, "echo", &agent.url, None).await;
    let mut events = s.state.events.subscribe();
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
    let rows = s
        .state
        .store
        .activity()
        .list(target, &Default::default())
        .await
        .unwrap();
    let row = rows
        .iter()
        .find(|r| r.activity_type == "a2a_receive")
        .expect("an a2a_receive row");
    assert_eq!(row.source_id, None);
    assert_eq!(row.status, "ok");
    assert_eq!(row.method.as_deref(), Some("message/send"));
    assert_eq!(row.summary.as_deref(), Some("message/send → echo"));
    // The canvas hears the answer.
    let mut seen = Vec::new();
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        seen.push(e.event.clone());
        if e.event == "A2A_RESPONSE" {
            assert_eq!(
                e.payload["response_body"]["result"]["parts"][0]["text"],
                "echo: hello"
            );
            break;
        }
    }
    assert!(seen.iter().any(|e| e == "A2A_RESPONSE"), "{seen:?}");
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
    let s = TestServer::start(
        db,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await;
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

    // A system caller id never comes from a header.
    let r = a2a(
        &s,
        parent_a,
        Some("system:restart-context"),
        Some(ADMIN),
        &msg,
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("invalid caller ID"))
    );
    // No identity at all.
    let r = a2a(&s, parent_a, None, None, &msg).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("missing caller auth token"))
    );
    // A token proves only its own workspace.
    let r = a2a(
        &s,
        parent_a,
        Some(&child_a.to_string()),
        Some(token_b.expose()),
        &msg,
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid caller auth token"))
    );
    let r = a2a(&s, parent_a, Some(&child_a.to_string()), None, &msg).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("missing caller auth token"))
    );
    let r = a2a(&s, parent_a, None, Some("not-a-token"), &msg).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid caller auth token"))
    );
    // Cousins may not talk; the bearer alone names the caller.
    let r = a2a(&s, child_b, None, Some(token_a.expose()), &msg).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["error"],
        "access denied: workspaces cannot communicate per hierarchy rules"
    );
    // Budget before payload.
    store
        .workspaces()
        .set_budget_limit(parent_a, Some(0))
        .await
        .unwrap();
    let r = a2a(
        &s,
        parent_a,
        Some(&child_a.to_string()),
        Some(token_a.expose()),
        "not json",
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (402, Some("workspace budget limit exceeded"))
    );
    store
        .workspaces()
        .set_budget_limit(parent_a, None)
        .await
        .unwrap();
    // Payload.
    let r = a2a(&s, parent_a, None, Some(ADMIN), "not json").await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("invalid JSON"))
    );
    let bad =
        json!({"method": "message/send", "params": {"message": {"role": "user", "content": true}}});
    let r = a2a(&s, parent_a, None, Some(ADMIN), &bad.to_string()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid params.message.content type");
    assert!(r.body["hint"].as_str().is_some());
    // Unknown target.
    let r = a2a(&s, WorkspaceId::new(), None, Some(ADMIN), &msg).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("workspace not found"))
    );
    // A provisioning workspace has no URL yet.
    store.workspaces().set_url(parent_b, None).await.unwrap();
    let r = a2a(&s, parent_b, None, Some(ADMIN), &msg).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"], "workspace has no URL");
    // The parent may talk to its child with its own token; the agent URL is a closed port
    // published by the (fake) backend: refused → 502.
    let token_pa = store.tokens().issue(parent_a).await.unwrap().token;
    let r = a2a(
        &s,
        child_a,
        Some(&parent_a.to_string()),
        Some(token_pa.expose()),
        &msg,
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["error"], "failed to reach workspace agent");
}

async fn a_busy_target_gets_its_messages_once_when_it_frees_up(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = registered(&s, "busy", &agent.url, None).await;
    heartbeat(&s, target, &token, 1).await;
    let first = a2a(&s, target, None, None, &message("q-1", "one")).await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["queued"], true);
    let queue_id = first.body["queue_id"].as_str().unwrap().to_owned();
    // Also a JSON-RPC answer: a submitted Task whose id is the queue id.
    assert_eq!(first.body["jsonrpc"], "2.0");
    assert_eq!(first.body["result"]["kind"], "task");
    assert_eq!(first.body["result"]["id"], queue_id.as_str());
    assert_eq!(first.body["result"]["status"]["state"], "submitted");
    // The same messageId again: the same queued row, no second message.
    let again = a2a(&s, target, None, None, &message("q-1", "one")).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["queue_id"], queue_id.as_str());
    let second = a2a(&s, target, None, None, &message("q-2", "two")).await;
    assert_eq!(second.body["queue_depth"], 2);
    assert!(
        agent.received().is_empty(),
        "nothing is sent to a busy agent"
    );
    // The target itself may read its queue item; a stranger may not.
    let (status, item) = get_queue(
        &s,
        target,
        &queue_id,
        Some(&target.to_string()),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["status"], "queued");
    assert!(item.get("body").is_none() && item.get("caller_id").is_none());
    let (status, _) = get_queue(&s, target, &queue_id, None, None).await;
    assert_eq!(status, 404);
    // A free slot: both are delivered, in order, once each.
    heartbeat(&s, target, &token, 0).await;
    agent.wait_for(2).await;
    eventually("the rows are completed", || async {
        let item = s
            .state
            .store
            .queue()
            .get(queue_id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        item.status == molecule_store::QueueStatus::Completed
    })
    .await;
    let report = s.state.a2a.sweep(an_hour_ago()).await;
    assert_eq!(report.delivered, 0);
    heartbeat(&s, target, &token, 0).await;
    assert_eq!(agent.deliveries_of("q-1"), 1);
    assert_eq!(agent.deliveries_of("q-2"), 1);
    let got = agent.received();
    assert_eq!(got[0]["params"]["message"]["messageId"], "q-1");
    let (_, item) = get_queue(
        &s,
        target,
        &queue_id,
        Some(&target.to_string()),
        Some(&token),
    )
    .await;
    assert_eq!(item["status"], "completed");
    assert_eq!(
        item["response_body"]["result"]["parts"][0]["text"],
        "echo: one"
    );
}

async fn get_queue(
    s: &TestServer,
    target: WorkspaceId,
    queue_id: &str,
    caller: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = s.http.get(format!(
        "{}/workspaces/{target}/a2a/queue/{queue_id}",
        s.base
    ));
    if let Some(c) = caller {
        req = req.header("X-Workspace-ID", c);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn a_native_session_agent_gets_no_queue_rows(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = registered(&s, "session", &agent.url, None).await;
    let hb = json!({
        "workspace_id": target,
        "active_tasks": 1,
        "runtime_metadata": { "capabilities": { "session": true, "heartbeat": true } },
    });
    let (status, _) = s
        .call("POST", "/registry/heartbeat", Some(&token), Some(hb))
        .await;
    assert_eq!(status, 200);
    let r = a2a(&s, target, None, None, &message("n-1", "busy?")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["native_session"], true);
    assert_eq!(r.body["busy"], true);
    assert_eq!(r.retry_after.as_deref(), Some("30"));
    assert_eq!(s.state.store.queue().depth(target).await.unwrap(), 0);
    // Without the capability the same message is queued.
    heartbeat(&s, target, &token, 1).await;
    let r = a2a(&s, target, None, None, &message("n-1", "busy?")).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

async fn an_agent_that_declines_gets_the_message_later_and_once(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = registered(&s, "declines", &agent.url, None).await;
    agent.answer(Answer::Status(429, json!({"error": "too busy"})));
    let r = a2a(&s, target, None, None, &message("d-1", "later")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(agent.deliveries_of("d-1"), 1, "one refused attempt");
    agent.answer(Answer::Echo);
    heartbeat(&s, target, &token, 0).await;
    agent.wait_for(2).await;
    let queue_id = r.body["queue_id"].as_str().unwrap().parse().unwrap();
    eventually("completed", || async {
        s.state
            .store
            .queue()
            .get(queue_id)
            .await
            .unwrap()
            .unwrap()
            .status
            == molecule_store::QueueStatus::Completed
    })
    .await;
    assert_eq!(
        agent.deliveries_of("d-1"),
        2,
        "the refused attempt and one delivery"
    );
}

async fn a_slow_agent_that_accepted_is_not_sent_the_message_again(db: TestStore) {
    let s = TestServer::start_configured(
        db,
        Options {
            backend: true,
            dev: true,
        },
        |st| {
            st.with_a2a_settings(molecule_a2a::Settings {
                idle_timeout: Duration::from_millis(300),
                policy: molecule_a2a::ssrf::UrlPolicy {
                    dev_mode: true,
                    saas: false,
                },
                ..Default::default()
            })
        },
    )
    .await;
    let agent = TestAgent::start().await;
    let (target, token) = registered(&s, "slow", &agent.url, None).await;
    agent.answer(Answer::Hold);
    let r = a2a(&s, target, None, None, &message("s-1", "take your time")).await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.body["delivery_confirmed"], true);
    assert_eq!(
        s.state.store.queue().depth(target).await.unwrap(),
        0,
        "not queued"
    );
    agent.release(1);
    heartbeat(&s, target, &token, 0).await;
    let report = s.state.a2a.sweep(an_hour_ago()).await;
    assert_eq!(report.delivered, 0);
    assert_eq!(agent.deliveries_of("s-1"), 1);
}

async fn an_expired_message_is_dropped_not_delivered(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = registered(&s, "ttl", &agent.url, None).await;
    heartbeat(&s, target, &token, 1).await;
    let body = json!({
        "method": "message/send",
        "params": { "expires_in_seconds": 1, "message": { "role": "user", "messageId": "t-1", "parts": [{"kind": "text", "text": "soon stale"}] } },
    });
    let r = a2a(&s, target, None, None, &body.to_string()).await;
    assert_eq!(r.status, 202);
    let queue_id = r.body["queue_id"].as_str().unwrap().parse().unwrap();
    let expires = s
        .state
        .store
        .queue()
        .get(queue_id)
        .await
        .unwrap()
        .unwrap()
        .expires_at
        .unwrap();
    eventually("the TTL passed", || async {
        time::OffsetDateTime::now_utc() > expires
    })
    .await;
    heartbeat(&s, target, &token, 0).await;
    let report = s.state.a2a.sweep(an_hour_ago()).await;
    assert_eq!(report.expired, 1);
    let item = s.state.store.queue().get(queue_id).await.unwrap().unwrap();
    assert_eq!(item.status, molecule_store::QueueStatus::Dropped);
    assert_eq!(agent.deliveries_of("t-1"), 0);
}

async fn a_poll_mode_agent_reads_its_messages_from_the_activity_feed(db: TestStore) {
    let s = dev(db).await;
    let (id, token) = external(&s, "poller", None).await;
    let body = json!({"id": id, "agent_card": {}, "delivery_mode": "poll"});
    let (status, reply) = s
        .call("POST", "/registry/register", Some(&token), Some(body))
        .await;
    assert_eq!(status, 200, "{reply}");
    let request = json!({
        "jsonrpc": "2.0",
        "id": "req-7",
        "method": "message/send",
        "params": { "message": { "role": "user", "messageId": "p-1", "contextId": "ctx-1",
                                 "parts": [{"kind": "text", "text": "pick me up"}] } },
    });
    let r = a2a(&s, id, None, None, &request.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The platform's fields (the canvas reads them) in a valid JSON-RPC 2.0 answer whose
    // result is an A2A Task in state `submitted`.
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["delivery_mode"], "poll");
    assert_eq!(r.body["method"], "message/send");
    assert_eq!(r.body["jsonrpc"], "2.0");
    assert_eq!(r.body["id"], "req-7");
    assert!(r.body.get("error").is_none());
    let task = &r.body["result"];
    assert_eq!(task["kind"], "task");
    assert_eq!(task["status"]["state"], "submitted");
    assert_eq!(task["contextId"], "ctx-1");
    assert!(task["id"].as_str().is_some_and(|t| !t.is_empty()));
    let (status, rows) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/activity?type=a2a_receive&since_secs=600"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["request_body"]["params"]["message"]["parts"][0]["text"],
        "pick me up"
    );
    // The cursor: nothing newer yet, then the next message.
    let cursor = rows[0]["id"].as_str().unwrap().to_owned();
    a2a(&s, id, None, None, &message("p-2", "and me")).await;
    let (_, rows) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/activity?type=a2a_receive&since_id={cursor}"),
            Some(&token),
            None,
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["request_body"]["params"]["message"]["messageId"],
        "p-2"
    ); // The A2A 1.0 method name gets the 1.0 shape.
    let v1 = json!({"jsonrpc": "2.0", "id": 8, "method": "SendMessage",
        "params": {"message": {"role": "user", "messageId": "p-0", "parts": [{"kind": "text", "text": "v1"}]}}});
    let r1 = a2a(&s, id, None, None, &v1.to_string()).await;
    assert_eq!(r1.body["id"], 8);
    assert_eq!(
        r1.body["result"]["task"]["status"]["state"],
        "TASK_STATE_SUBMITTED"
    );
}

/// A backend workspace whose published address is `url`, online (as after its agent registered).
async fn online_at(s: &TestServer, id: WorkspaceId, url: &str) {
    let workspaces = s.state.store.workspaces();
    workspaces.set_url(id, Some(url)).await.unwrap();
    workspaces
        .transition(id, WorkspaceStatus::Online, None)
        .await
        .unwrap();
}

async fn a_dead_target_is_restarted_exactly_once(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let id = s.create_dev(json!({"name": "fragile"})).await;
    s.backend().wait_for(|b| b.started(id) == 1).await;
    // The platform published the agent's address and the agent is online.
    online_at(&s, id, &agent.url).await;
    agent.answer(Answer::Status(503, json!({"error": "origin down"})));
    // The compute is gone.
    s.backend()
        .running_answers
        .lock()
        .unwrap()
        .push_back(Running::No);
    let r = a2a(&s, id, None, None, &message("x-1", "are you there")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["restarting"], true);
    assert_eq!(r.retry_after.as_deref(), Some("15"));
    s.backend().wait_for(|b| b.started(id) == 2).await;
    assert_eq!(s.backend().start_count(), 2, "one restart");
    // Once the restart published its address, the agent is back (at the test's address).
    eventually("the restart published its URL", || async {
        let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
        ws.url.is_some_and(|u| u.starts_with("http://127.0.0.1:1/"))
    })
    .await;
    // A running compute answering 503 is passed through, with no restart.
    online_at(&s, id, &agent.url).await;
    let r = a2a(&s, id, None, None, &message("x-2", "again")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"], "origin down");
    assert_eq!(s.backend().started(id), 2);
}

async fn a_hibernated_target_is_woken_by_a_message(db: TestStore) {
    let s = dev(db).await;
    let id = s.create_dev(json!({"name": "sleeper"})).await;
    s.backend().wait_for(|b| b.started(id) == 1).await;
    s.state
        .store
        .workspaces()
        .transition(id, WorkspaceStatus::Online, None)
        .await
        .unwrap();
    let (status, reply) = s
        .call("POST", &format!("/workspaces/{id}/hibernate"), None, None)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Hibernated);
    let r = a2a(&s, id, None, None, &message("w-1", "wake up")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["waking"], true);
    assert_eq!(r.retry_after.as_deref(), Some("15"));
    s.backend().wait_for(|b| b.started(id) == 2).await;
}

async fn a_delegation_runs_through_the_proxy_and_is_recorded(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let (lead, lead_token) = registered(&s, "lead", &agent.url, None).await;
    let (worker, worker_token) = registered(&s, "worker", &agent.url, Some(lead)).await;
    let path = format!("/workspaces/{lead}/delegate");
    let (status, reply) = s
        .call(
            "POST",
            &path,
            Some(&lead_token),
            Some(json!({"target_id": lead, "task": "x"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("self-delegation not permitted"))
    );
    let (status, reply) = s
        .call(
            "POST",
            &path,
            Some(&lead_token),
            Some(json!({"target_id": "nope", "task": "x"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("target_id must be a valid UUID"))
    );
    let body = json!({"target_id": worker, "task": "summarise", "idempotency_key": "k-1"});
    let (status, reply) = s
        .call("POST", &path, Some(&lead_token), Some(body.clone()))
        .await;
    assert_eq!(status, 202, "{reply}");
    let delegation_id = reply["delegation_id"].as_str().unwrap().to_owned();
    eventually("the delegation completes", || async {
        delegation(&s, lead, &lead_token, &delegation_id).await["status"] == "completed"
    })
    .await;
    let (_, list) = s
        .call(
            "GET",
            &format!("/workspaces/{lead}/delegations"),
            Some(&lead_token),
            None,
        )
        .await;
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
    let (status, reply) = s.call("POST", &path, Some(&lead_token), Some(body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["idempotent_hit"], true);
    assert_eq!(reply["delegation_id"], delegation_id.as_str());
    assert_eq!(agent.deliveries_of(&delegation_id), 1);

    // A busy worker: queued, then completed by the drain.
    heartbeat(&s, worker, &worker_token, 1).await;
    let (status, reply) = s
        .call(
            "POST",
            &path,
            Some(&lead_token),
            Some(json!({"target_id": worker, "task": "later"})),
        )
        .await;
    assert_eq!(status, 202);
    let queued_id = reply["delegation_id"].as_str().unwrap().to_owned();
    eventually("the delegation is queued", || async {
        delegation(&s, lead, &lead_token, &queued_id).await["status"] == "queued"
    })
    .await;
    let mut events = s.state.events.subscribe();
    heartbeat(&s, worker, &worker_token, 0).await;
    eventually("the drained delegation completes", || async {
        delegation(&s, lead, &lead_token, &queued_id).await["status"] == "completed"
    })
    .await;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if e.event == "DELEGATION_COMPLETE" && e.payload["delegation_id"] == queued_id.as_str() {
            assert_eq!(e.payload["via"], "queue_drain");
            break;
        }
    }
    assert_eq!(agent.deliveries_of(&queued_id), 1);
}

/// The delegation list entry of `id` (`null` when absent).
async fn delegation(s: &TestServer, lead: WorkspaceId, token: &str, id: &str) -> Value {
    let path = format!("/workspaces/{lead}/delegations");
    let (status, list) = s.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["delegation_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn drop_stale_validates_and_drops_only_old_queued_rows(db: TestStore) {
    let s = TestServer::start(
        db,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await;
    let (status, reply) = s
        .call(
            "POST",
            "/admin/a2a-queue/drop-stale?max_age_minutes=0",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("max_age_minutes must be a positive integer"))
    );
    let (status, reply) = s
        .call("POST", "/admin/a2a-queue/drop-stale", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply, json!({"dropped": 0}));
}

/// A strict-mode server with a backend.
async fn strict(db: TestStore) -> TestServer {
    TestServer::start(
        db,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await
}

/// A workspace the fake backend started, online at `url`, with the token it was given.
async fn started_online(s: &TestServer, name: &str, url: &str) -> (WorkspaceId, String) {
    let id = s.create(json!({ "name": name })).await;
    let token = s.backend().token_of(id).await;
    online_at(s, id, url).await;
    (id, token)
}

/// Numbers a client sends never overflow the server's arithmetic: out-of-range values are a
/// 400 with a clear message and nothing is queued (issue 11: `expires_in_seconds = i64::MAX`
/// to a busy target used to panic in the queue).
async fn out_of_range_numbers_are_refused_not_a_panic(db: TestStore) {
    let s = strict(db).await;
    let (target, token) = started_online(&s, "busy", "http://93.184.216.34:1").await;
    heartbeat(&s, target, &token, 1).await;
    let with_ttl = |id: &str, ttl: &str| {
        format!(
            r#"{{"method":"message/send","params":{{"expires_in_seconds":{ttl},"message":{{"role":"user","messageId":"{id}","parts":[{{"kind":"text","text":"x"}}]}}}}}}"#
        )
    };
    for ttl in ["9223372036854775807", "18446744073709551615", "31536001"] {
        let reply = a2a(&s, target, None, Some(ADMIN), &with_ttl(ttl, ttl)).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (
                400,
                Some("params.expires_in_seconds must be at most 31536000 (365 days)")
            ),
            "{ttl}"
        );
    }
    assert_eq!(s.state.store.queue().depth(target).await.unwrap(), 0);
    // In range, zero, negative or not an integer: queued (no TTL for the last three).
    for (n, ttl) in ["31536000", "0", "-9223372036854775808", "1e308"]
        .iter()
        .enumerate()
    {
        let reply = a2a(
            &s,
            target,
            None,
            Some(ADMIN),
            &with_ttl(&format!("m{n}"), ttl),
        )
        .await;
        assert_eq!(reply.status, 202, "{ttl}: {}", reply.body);
        let queued = s
            .state
            .store
            .queue()
            .get(reply.body["queue_id"].as_str().unwrap().parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(queued.expires_at.is_some(), n == 0, "{ttl}");
    }
    let (status, reply) = s
        .call(
            "POST",
            "/admin/a2a-queue/drop-stale?max_age_minutes=18446744073709551615",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (
            400,
            Some("max_age_minutes must be at most 5256000 (10 years)")
        )
    );
}

/// The delegation routes answer 404 for a workspace or delegation that does not exist, and
/// record or send nothing (issue 11).
async fn delegation_routes_refuse_missing_rows(db: TestStore) {
    let s = strict(db).await;
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
    let mut events = s.state.events.subscribe();
    for (path, body, error) in cases {
        let (status, reply) = s.call("POST", &path, Some(ADMIN), Some(body)).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (404, Some(error)),
            "{path}"
        );
    }
    for ws in [source, unknown] {
        let rows = s
            .state
            .store
            .activity()
            .list(ws, &Default::default())
            .await
            .unwrap();
        assert!(rows.is_empty(), "nothing recorded for {ws}: {rows:?}");
    }
    while let Ok(e) = events.try_recv() {
        assert!(!e.event.starts_with("DELEGATION"), "{}", e.event);
    }
}

/// An agent's `text/event-stream` answer reaches the caller event by event (the agent sends
/// its second event only after the test has read the first through the proxy), with its
/// content type, and the stream leaves one activity row when it ends.
async fn a_streamed_answer_is_relayed_event_by_event(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let (target, _) = registered(&s, "streamer", &agent.url, None).await;
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
    eventually("the stream's activity row", || async {
        let rows = s
            .state
            .store
            .activity()
            .list(target, &Default::default())
            .await
            .unwrap();
        rows.iter().any(|r| {
            r.activity_type == "a2a_receive"
                && r.status == "ok"
                && r.response_body.as_ref() == Some(&events[2])
        })
    })
    .await;
    let rows = s
        .state
        .store
        .activity()
        .list(target, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .filter(|r| r.activity_type == "a2a_receive")
            .count(),
        1
    );
}

molecule_store::on_both_backends!(
    a_streamed_answer_is_relayed_event_by_event,
    out_of_range_numbers_are_refused_not_a_panic,
    delegation_routes_refuse_missing_rows,
    a_message_reaches_the_agent_and_its_answer_comes_back,
    each_pipeline_step_fails_with_its_own_status,
    a_busy_target_gets_its_messages_once_when_it_frees_up,
    an_agent_that_declines_gets_the_message_later_and_once,
    a_native_session_agent_gets_no_queue_rows,
    a_slow_agent_that_accepted_is_not_sent_the_message_again,
    an_expired_message_is_dropped_not_delivered,
    a_poll_mode_agent_reads_its_messages_from_the_activity_feed,
    a_dead_target_is_restarted_exactly_once,
    a_hibernated_target_is_woken_by_a_message,
    a_delegation_runs_through_the_proxy_and_is_recorded,
    drop_stale_validates_and_drops_only_old_queued_rows,
);

/// A reclaim cutoff that leaves deliveries in flight alone.
fn an_hour_ago() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::hours(1)
}
