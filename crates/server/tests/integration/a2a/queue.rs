//! The A2A queue: a busy target gets its messages once when it frees up; an agent that
//! declines or times out is not sent a message twice; expired messages are dropped; poll-mode
//! agents read theirs from the activity feed; out-of-range numbers and the stale-drop route.

use std::time::Duration;

use molecule_store::QueueStatus;
use molecule_store::testing::TestStore;
use serde_json::json;

use super::{a2a, an_hour_ago, message, started_online, with_idle_timeout};
use crate::common::agent::{Answer, TestAgent};
use crate::common::{ADMIN, TestServer, assert_error, assert_json, assert_status, eventually};

molecule_store::on_both_backends!(
    a_busy_target_gets_its_messages_once_when_it_frees_up,
    a_native_session_agent_gets_no_queue_rows,
    an_agent_that_declines_gets_the_message_later_and_once,
    a_slow_agent_that_accepted_is_not_sent_the_message_again,
    an_expired_message_is_dropped_not_delivered,
    a_poll_mode_agent_reads_its_messages_from_the_activity_feed,
    out_of_range_numbers_are_refused_not_a_panic,
    drop_stale_validates_and_drops_only_old_queued_rows,
);

/// Waits until the queue row `id` is completed.
async fn completed(s: &TestServer, id: uuid::Uuid) {
    eventually("the row is completed", || async {
        let item = s.state.store.queue().get(id).await.unwrap().unwrap();
        item.status == QueueStatus::Completed
    })
    .await;
}

async fn a_busy_target_gets_its_messages_once_when_it_frees_up(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = s.registered("busy", &agent.url, None).await;
    s.report_tasks(target, &token, 1).await;
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
    let item_path = format!("/workspaces/{target}/a2a/queue/{queue_id}");
    let as_target = target.to_string();
    let item = s.get_as(&item_path, Some(&as_target), Some(&token)).await;
    let item = assert_status(item, 200);
    assert_eq!(item["status"], "queued");
    assert!(item.get("body").is_none() && item.get("caller_id").is_none());
    assert_status(s.get_as(&item_path, None, None).await, 404);
    // A free slot: both are delivered, in order, once each.
    s.report_tasks(target, &token, 0).await;
    agent.wait_for(2).await;
    completed(&s, queue_id.parse().unwrap()).await;
    let report = s.state.a2a.sweep(an_hour_ago()).await;
    assert_eq!(report.delivered, 0);
    s.report_tasks(target, &token, 0).await;
    assert_eq!(agent.deliveries_of("q-1"), 1);
    assert_eq!(agent.deliveries_of("q-2"), 1);
    let got = agent.received();
    assert_eq!(got[0]["params"]["message"]["messageId"], "q-1");
    let (_, item) = s.get_as(&item_path, Some(&as_target), Some(&token)).await;
    assert_eq!(item["status"], "completed");
    assert_eq!(
        item["response_body"]["result"]["parts"][0]["text"],
        "echo: one"
    );
}

async fn a_native_session_agent_gets_no_queue_rows(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = s.registered("session", &agent.url, None).await;
    let hb = json!({
        "workspace_id": target,
        "active_tasks": 1,
        "runtime_metadata": { "capabilities": { "session": true, "heartbeat": true } },
    });
    assert_status(s.heartbeat(Some(&token), hb).await, 200);
    let r = a2a(&s, target, None, None, &message("n-1", "busy?")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["native_session"], true);
    assert_eq!(r.body["busy"], true);
    assert_eq!(r.retry_after.as_deref(), Some("30"));
    assert_eq!(s.state.store.queue().depth(target).await.unwrap(), 0);
    // Without the capability the same message is queued.
    s.report_tasks(target, &token, 1).await;
    let r = a2a(&s, target, None, None, &message("n-1", "busy?")).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

async fn an_agent_that_declines_gets_the_message_later_and_once(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = s.registered("declines", &agent.url, None).await;
    agent.answer(Answer::Status(429, json!({"error": "too busy"})));
    let r = a2a(&s, target, None, None, &message("d-1", "later")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(agent.deliveries_of("d-1"), 1, "one refused attempt");
    agent.answer(Answer::Echo);
    s.report_tasks(target, &token, 0).await;
    agent.wait_for(2).await;
    completed(&s, r.body["queue_id"].as_str().unwrap().parse().unwrap()).await;
    assert_eq!(
        agent.deliveries_of("d-1"),
        2,
        "the refused attempt and one delivery"
    );
}

async fn a_slow_agent_that_accepted_is_not_sent_the_message_again(db: TestStore) {
    let s = with_idle_timeout(db, Duration::from_millis(300)).await;
    let agent = TestAgent::start().await;
    let (target, token) = s.registered("slow", &agent.url, None).await;
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
    s.report_tasks(target, &token, 0).await;
    let report = s.state.a2a.sweep(an_hour_ago()).await;
    assert_eq!(report.delivered, 0);
    assert_eq!(agent.deliveries_of("s-1"), 1);
}

async fn an_expired_message_is_dropped_not_delivered(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (target, token) = s.registered("ttl", &agent.url, None).await;
    s.report_tasks(target, &token, 1).await;
    let body = json!({
        "method": "message/send",
        "params": { "expires_in_seconds": 1, "message": { "role": "user", "messageId": "t-1", "parts": [{"kind": "text", "text": "soon stale"}] } },
    });
    let r = a2a(&s, target, None, None, &body.to_string()).await;
    assert_eq!(r.status, 202);
    let queue_id = r.body["queue_id"].as_str().unwrap().parse().unwrap();
    let queue = s.state.store.queue();
    let queued = queue.get(queue_id).await.unwrap().unwrap();
    let expires = queued.expires_at.unwrap();
    eventually("the TTL passed", || async {
        time::OffsetDateTime::now_utc() > expires
    })
    .await;
    s.report_tasks(target, &token, 0).await;
    let report = s.state.a2a.sweep(an_hour_ago()).await;
    assert_eq!(report.expired, 1);
    let item = queue.get(queue_id).await.unwrap().unwrap();
    assert_eq!(item.status, QueueStatus::Dropped);
    assert_eq!(agent.deliveries_of("t-1"), 0);
}

async fn a_poll_mode_agent_reads_its_messages_from_the_activity_feed(db: TestStore) {
    let s = TestServer::dev(db).await;
    let (id, token) = s.external("poller", None).await;
    let body = json!({"id": id, "agent_card": {}, "delivery_mode": "poll"});
    assert_status(s.register(Some(&token), body).await, 200);
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
    let feed = format!("/workspaces/{id}/activity?type=a2a_receive");
    let recent = format!("{feed}&since_secs=600");
    let rows = assert_status(s.call("GET", &recent, Some(&token), None).await, 200);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["request_body"]["params"]["message"]["parts"][0]["text"],
        "pick me up"
    );
    // The cursor: nothing newer yet, then the next message.
    let cursor = rows[0]["id"].as_str().unwrap().to_owned();
    a2a(&s, id, None, None, &message("p-2", "and me")).await;
    let after = format!("{feed}&since_id={cursor}");
    let (_, rows) = s.call("GET", &after, Some(&token), None).await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["request_body"]["params"]["message"]["messageId"],
        "p-2"
    );
    // The A2A 1.0 method name gets the 1.0 shape.
    let v1 = json!({"jsonrpc": "2.0", "id": 8, "method": "SendMessage",
        "params": {"message": {"role": "user", "messageId": "p-0", "parts": [{"kind": "text", "text": "v1"}]}}});
    let r1 = a2a(&s, id, None, None, &v1.to_string()).await;
    assert_eq!(r1.body["id"], 8);
    assert_eq!(
        r1.body["result"]["task"]["status"]["state"],
        "TASK_STATE_SUBMITTED"
    );
}

/// Numbers a client sends never overflow the server's arithmetic: out-of-range values are a
/// 400 with a clear message and nothing is queued (issue 11: `expires_in_seconds = i64::MAX`
/// to a busy target used to panic in the queue).
async fn out_of_range_numbers_are_refused_not_a_panic(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (target, token) = started_online(&s, "busy", "http://93.184.216.34:1").await;
    s.report_tasks(target, &token, 1).await;
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
        let body = with_ttl(&format!("m{n}"), ttl);
        let reply = a2a(&s, target, None, Some(ADMIN), &body).await;
        assert_eq!(reply.status, 202, "{ttl}: {}", reply.body);
        let queue_id = reply.body["queue_id"].as_str().unwrap().parse().unwrap();
        let queued = s.state.store.queue().get(queue_id).await.unwrap().unwrap();
        assert_eq!(queued.expires_at.is_some(), n == 0, "{ttl}");
    }
    let drop = "/admin/a2a-queue/drop-stale?max_age_minutes=18446744073709551615";
    assert_error(
        s.admin("POST", drop, None).await,
        400,
        "max_age_minutes must be at most 5256000 (10 years)",
    );
}

async fn drop_stale_validates_and_drops_only_old_queued_rows(db: TestStore) {
    let s = TestServer::strict(db).await;
    let drop = "/admin/a2a-queue/drop-stale";
    assert_error(
        s.admin("POST", &format!("{drop}?max_age_minutes=0"), None)
            .await,
        400,
        "max_age_minutes must be a positive integer",
    );
    assert_json(
        s.admin("POST", drop, None).await,
        200,
        json!({"dropped": 0}),
    );
}
