//! Approvals, the canvas viewport, the workspace config blob, agent records, token usage,
//! traces, transcript and the audit ledger over real HTTP against the
//! real router, both databases (`observability.md` §1.6–1.9, §1.14, §1.15, §1.20, §1.21).

use std::time::Duration;

use crate::common::agent::{Answer, TestAgent};
use crate::common::{ADMIN, Options, TestServer};
use futures_util::StreamExt;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

on_both_backends!(
    an_agent_asks_and_a_person_decides_once,
    approvals_refuse_bad_input_and_expire,
    the_viewport_is_saved_and_validated,
    the_config_blob_merges_top_level_keys,
    agent_records_are_assigned_replaced_moved_and_removed,
    usage_reported_by_a_real_agent_is_summed,
    the_transcript_comes_from_the_agent,
    traces_come_from_langfuse_or_a_clear_503,
    the_audit_chain_is_verified_as_the_runtime_writes_it,
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

/// The next event of `kind` on a canvas `/ws` connection (bounded wait).
async fn next_event<S>(ws: &mut S, kind: &str) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let wait = async {
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                continue;
            };
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["event"] == kind {
                return event;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} event on /ws"))
}

async fn an_agent_asks_and_a_person_decides_once(db: TestStore) {
    let s = server(db).await;
    let lead = s.create(json!({"name": "lead"})).await;
    let agent = s.create(json!({"name": "agent", "parent_id": lead})).await;
    let token = s.backend().token_of(agent).await;
    // The canvas listens on /ws with the admin token.
    let ws_url = format!("{}/ws?token={ADMIN}", s.base.replacen("http", "ws", 1));
    let (mut canvas, _) = tokio_tungstenite::connect_async(ws_url.into_client_request().unwrap())
        .await
        .unwrap();

    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{agent}/approvals"),
            Some(&token),
            Some(
                json!({"action": "deploy to prod", "reason": "release 1.2", "task_id": "t-9",
                        "context": {"pr": 42}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["status"], "pending");
    let id = reply["approval_id"].as_str().unwrap().to_owned();
    let requested = next_event(&mut canvas, "APPROVAL_REQUESTED").await;
    assert_eq!(requested["workspace_id"], agent.to_string());
    assert_eq!(requested["payload"]["approval_id"], id.as_str());
    assert_eq!(requested["payload"]["action"], "deploy to prod");
    let escalated = next_event(&mut canvas, "APPROVAL_ESCALATED").await;
    assert_eq!(escalated["workspace_id"], lead.to_string());
    assert_eq!(escalated["payload"]["from_workspace_id"], agent.to_string());

    // The canvas's poll shows it, with the workspace's name.
    let (status, pending) = s.call("GET", "/approvals/pending", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], id.as_str());
    assert_eq!(pending[0]["workspace_name"], "agent");
    assert_eq!(pending[0]["status"], "pending");
    let (status, _) = s
        .call("GET", "/approvals/pending", Some(&token), None)
        .await;
    assert_eq!(status, 401, "a workspace token is never admin");

    // The agent cannot approve its own request.
    let decide = format!("/workspaces/{agent}/approvals/{id}/decide");
    let (status, _) = s
        .call(
            "POST",
            &decide,
            Some(&token),
            Some(json!({"decision": "approved"})),
        )
        .await;
    assert_eq!(status, 403);
    // A person decides, once.
    let (status, reply) = s
        .call(
            "POST",
            &decide,
            Some(ADMIN),
            Some(json!({"decision": "approved", "decided_by": "ana"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"status": "approved", "approval_id": id}));
    let approved = next_event(&mut canvas, "APPROVAL_APPROVED").await;
    assert_eq!(approved["payload"]["decided_by"], "ana");
    let (status, reply) = s
        .call(
            "POST",
            &decide,
            Some(ADMIN),
            Some(json!({"decision": "denied"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (409, Some("approval already decided"))
    );
    let (_, list) = s
        .call(
            "GET",
            &format!("/workspaces/{agent}/approvals"),
            Some(&token),
            None,
        )
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0]["status"], "approved",
        "the second decision changed nothing"
    );
    assert_eq!(list[0]["decided_by"], "ana");
    assert!(list[0]["decided_at"].is_string());
    let (_, pending) = s.call("GET", "/approvals/pending", Some(ADMIN), None).await;
    assert!(pending.as_array().unwrap().is_empty());
}

async fn approvals_refuse_bad_input_and_expire(db: TestStore) {
    let s = server(db).await;
    let agent = s.create(json!({"name": "agent"})).await;
    let other = s.create(json!({"name": "other"})).await;
    let path = format!("/workspaces/{agent}/approvals");
    for (body, error) in [
        (json!({}), "invalid request body"),
        (json!({"action": ""}), "invalid request body"),
        (json!({"action": 5}), "invalid request body"),
        (
            json!({"action": "x", "context": [1]}),
            "context must be a JSON object",
        ),
    ] {
        let (status, reply) = s.call("POST", &path, Some(ADMIN), Some(body.clone())).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
    let (status, _) = s
        .call(
            "POST",
            "/workspaces/not-a-uuid/approvals",
            Some(ADMIN),
            Some(json!({"action": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    let unknown = molecule_domain::WorkspaceId::new();
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{unknown}/approvals"),
            Some(ADMIN),
            Some(json!({"action": "x"})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = s.call("GET", &path, Some(ADMIN), None).await;
    assert!(list.as_array().unwrap().is_empty(), "nothing was written");

    let (_, reply) = s
        .call("POST", &path, Some(ADMIN), Some(json!({"action": "x"})))
        .await;
    let id = reply["approval_id"].as_str().unwrap().to_owned();
    let decide = format!("/workspaces/{agent}/approvals/{id}/decide");
    for (body, status, error) in [
        (json!({}), 400, "invalid request body"),
        (
            json!({"decision": "maybe"}),
            400,
            "decision must be 'approved' or 'denied'",
        ),
    ] {
        let (got, reply) = s.call("POST", &decide, Some(ADMIN), Some(body)).await;
        assert_eq!((got, reply["error"].as_str()), (status, Some(error)));
    }
    // Another workspace's approval, or an unknown one, is not found.
    for path in [
        format!("/workspaces/{other}/approvals/{id}/decide"),
        format!(
            "/workspaces/{agent}/approvals/{}/decide",
            uuid::Uuid::new_v4()
        ),
        format!("/workspaces/{agent}/approvals/nope/decide"),
    ] {
        let (status, reply) = s
            .call(
                "POST",
                &path,
                Some(ADMIN),
                Some(json!({"decision": "approved"})),
            )
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (404, Some("approval not found")),
            "{path}"
        );
    }
    // An old pending request is denied as auto-expired by the next pending poll.
    let eleven_minutes_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(11);
    let expired = s
        .state
        .store
        .approvals()
        .expire(eleven_minutes_ago)
        .await
        .unwrap();
    assert!(expired.is_empty(), "a fresh request does not expire");
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(11);
    let expired = s.state.store.approvals().expire(later).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].decided_by.as_deref(), Some("auto-expired"));
    let (status, reply) = s
        .call(
            "POST",
            &decide,
            Some(ADMIN),
            Some(json!({"decision": "approved"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (409, Some("approval already decided"))
    );
}

async fn the_viewport_is_saved_and_validated(db: TestStore) {
    let s = server(db).await;
    let (status, v) = s.call("GET", "/canvas/viewport", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"x": 0.0, "y": 0.0, "zoom": 1.0}));
    let (status, _) = s
        .call(
            "PUT",
            "/canvas/viewport",
            None,
            Some(json!({"x": 1, "y": 2, "zoom": 1.5})),
        )
        .await;
    assert_eq!(status, 401);
    for (raw, error) in [
        ("nope", "invalid viewport data"),
        (r#"{"x": "a"}"#, "invalid viewport data"),
        (r#"{"x": 1e999, "zoom": 1}"#, "invalid viewport data"),
        (r#"{"x": 1, "zoom": 0}"#, "zoom must be greater than 0"),
        (r#"{"x": 1, "zoom": -2}"#, "zoom must be greater than 0"),
    ] {
        let resp = s
            .http
            .put(format!("{}/canvas/viewport", s.base))
            .bearer_auth(ADMIN)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{raw}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], error, "{raw}");
    }
    let (_, v) = s.call("GET", "/canvas/viewport", None, None).await;
    assert_eq!(
        v,
        json!({"x": 0.0, "y": 0.0, "zoom": 1.0}),
        "nothing was saved"
    );
    for saved in [
        json!({"x": 10.5, "y": -3, "zoom": 1.5}),
        json!({"x": 1, "y": 2, "zoom": 0.5}),
    ] {
        let (status, reply) = s
            .call("PUT", "/canvas/viewport", Some(ADMIN), Some(saved.clone()))
            .await;
        assert_eq!((status, reply), (200, json!({"status": "saved"})));
        let (_, v) = s.call("GET", "/canvas/viewport", None, None).await;
        for k in ["x", "y", "zoom"] {
            assert_eq!(v[k].as_f64(), saved[k].as_f64(), "{k}");
        }
    }
}

async fn the_config_blob_merges_top_level_keys(db: TestStore) {
    let s = server(db).await;
    let id = s.create(json!({"name": "configured"})).await;
    let token = s.backend().token_of(id).await;
    let path = format!("/workspaces/{id}/config");
    let (status, reply) = s.call("GET", &path, Some(&token), None).await;
    assert_eq!((status, reply), (200, json!({"data": {}})));
    let (status, reply) = s
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"a": 1, "nested": {"x": 1, "y": 2}})),
        )
        .await;
    assert_eq!((status, reply), (200, json!({"status": "updated"})));
    let (status, _) = s
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"nested": {"x": 9}, "b": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, reply) = s.call("GET", &path, Some(ADMIN), None).await;
    assert_eq!(
        reply,
        json!({"data": {"a": 1, "nested": {"x": 9}, "b": true}})
    );
    // Bad input: nothing written.
    for (raw, status, error) in [
        ("not json".to_owned(), 400, "invalid JSON"),
        ("[1,2]".to_owned(), 400, "config must be a JSON object"),
        (
            format!(r#"{{"big": "{}"}}"#, "x".repeat(300 * 1024)),
            413,
            "body too large or unreadable",
        ),
    ] {
        let resp = s
            .http
            .patch(format!("{}{path}", s.base))
            .bearer_auth(&token)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], error);
    }
    let (_, reply) = s.call("GET", &path, Some(ADMIN), None).await;
    assert_eq!(reply["data"]["a"], 1);
    assert!(reply["data"].get("big").is_none());
    // Another workspace's token cannot read or write it; an unknown workspace is 404.
    let other = s.create(json!({"name": "other"})).await;
    let other_token = s.backend().token_of(other).await;
    let (status, _) = s.call("GET", &path, Some(&other_token), None).await;
    assert_eq!(status, 401);
    let unknown = molecule_domain::WorkspaceId::new();
    let (status, _) = s
        .call(
            "PATCH",
            &format!("/workspaces/{unknown}/config"),
            Some(ADMIN),
            Some(json!({"a": 1})),
        )
        .await;
    assert_eq!(status, 404);
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

/// An external workspace registered at `url` in dev mode.
async fn registered(s: &TestServer, name: &str, url: &str) -> molecule_domain::WorkspaceId {
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            None,
            Some(json!({"name": name, "runtime": "external"})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let id: molecule_domain::WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
    let token = reply["connection"]["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&token),
            Some(json!({"id": id, "url": url, "agent_card": {"name": name}})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    id
}

async fn agent_records_are_assigned_replaced_moved_and_removed(db: TestStore) {
    let s = server(db).await;
    let a = s.create(json!({"name": "a"})).await;
    let b = s.create(json!({"name": "b"})).await;
    let token = s.backend().token_of(a).await;
    let path = format!("/workspaces/{a}/agent");
    for body in [json!({}), json!({"model": ""}), json!({"model": "x\ny"})] {
        let (status, _) = s
            .call("POST", &path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, reply) = s
        .call("PATCH", &path, Some(&token), Some(json!({"model": "m"})))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("no active agent to replace"))
    );
    let (status, reply) = s
        .call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"model": "claude-a"})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["model"], "claude-a");
    let first = reply["agent_id"].as_str().unwrap().to_owned();
    let (status, reply) = s
        .call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"model": "claude-b"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (
            409,
            Some("workspace already has an active agent, use PATCH to replace")
        )
    );
    let (status, reply) = s
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"model": "claude-b"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["old_model"], "claude-a");
    assert_ne!(reply["agent_id"], first.as_str());
    // Moving needs a person: a workspace token cannot push its agent elsewhere.
    let move_path = format!("/workspaces/{a}/agent/move");
    let (status, _) = s
        .call(
            "POST",
            &move_path,
            Some(&token),
            Some(json!({"target_workspace_id": b})),
        )
        .await;
    assert_eq!(status, 403);
    let unknown = molecule_domain::WorkspaceId::new();
    let (status, reply) = s
        .call(
            "POST",
            &move_path,
            Some(ADMIN),
            Some(json!({"target_workspace_id": unknown})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("target workspace not found"))
    );
    let (status, reply) = s
        .call(
            "POST",
            &move_path,
            Some(ADMIN),
            Some(json!({"target_workspace_id": b})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"], "claude-b");
    assert_eq!(reply["to_workspace"], b.to_string());
    assert!(s.state.store.agents().active(a).await.unwrap().is_none());
    assert_eq!(
        s.state
            .store
            .agents()
            .active(b)
            .await
            .unwrap()
            .unwrap()
            .model
            .as_deref(),
        Some("claude-b")
    );
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{b}/agent/move"),
            Some(ADMIN),
            Some(json!({"target_workspace_id": a})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{b}/agent/move"),
            Some(ADMIN),
            Some(json!({"target_workspace_id": a})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (409, Some("target workspace already has an active agent"))
    );
    let (status, reply) = s.call("DELETE", &path, Some(&token), None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "removed");
    let (status, reply) = s.call("DELETE", &path, Some(&token), None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("no active agent to remove"))
    );
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{unknown}/agent"),
            Some(ADMIN),
            Some(json!({"model": "m"})),
        )
        .await;
    assert_eq!(status, 404);
}

async fn usage_reported_by_a_real_agent_is_summed(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let id = registered(&s, "counted", &agent.url).await;
    let (status, m) = s
        .call("GET", &format!("/workspaces/{id}/metrics"), None, None)
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        (m["input_tokens"].as_i64(), m["total_calls"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(m["estimated_cost_usd"], "0.000000");
    let answers = [
        json!({"jsonrpc": "2.0", "id": "1", "result": {"kind": "message", "role": "agent",
               "messageId": "m1", "parts": [{"kind": "text", "text": "a"}],
               "usage": {"input_tokens": 1000, "output_tokens": 200}}}),
        json!({"jsonrpc": "2.0", "id": "2", "result": {"kind": "message", "role": "agent",
               "messageId": "m2", "parts": [{"kind": "text", "text": "b"}]},
               "usage": {"input_tokens": 500, "output_tokens": 100}}),
        // No usage: not a counted call.
        json!({"jsonrpc": "2.0", "id": "3", "result": {"kind": "message", "role": "agent",
               "messageId": "m3", "parts": [{"kind": "text", "text": "c"}]}}),
    ];
    for (n, answer) in answers.iter().enumerate() {
        agent.answer(Answer::Status(200, answer.clone()));
        let body = json!({"method": "message/send", "params": {"message": {"role": "user",
            "messageId": format!("u{n}"), "parts": [{"kind": "text", "text": "x"}]}}});
        let (status, reply) = s
            .call("POST", &format!("/workspaces/{id}/a2a"), None, Some(body))
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    // Written off the hot path: wait (bounded) for the writer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let m = loop {
        let (_, m) = s
            .call("GET", &format!("/workspaces/{id}/metrics"), None, None)
            .await;
        if m["total_calls"] == 2 {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage not recorded: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(m["input_tokens"], 1500);
    assert_eq!(m["output_tokens"], 300);
    // 1500 × 0.000003 + 300 × 0.000015
    assert_eq!(m["estimated_cost_usd"], "0.009000");
    let start = m["period_start"].as_str().unwrap();
    assert!(start.ends_with("T00:00:00Z"), "{start}");
    let (status, _) = s
        .call(
            "GET",
            &format!(
                "/workspaces/{}/metrics",
                molecule_domain::WorkspaceId::new()
            ),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

async fn the_transcript_comes_from_the_agent(db: TestStore) {
    let s = dev(db).await;
    let agent = TestAgent::start().await;
    let id = registered(&s, "talker", &agent.url).await;
    let token = s.state.store.tokens().issue(id).await.unwrap().token;
    let resp = s
        .http
        .get(format!(
            "{}/workspaces/{id}/transcript?since=5&limit=2&evil=1",
            s.base
        ))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["runtime"], "test");
    assert_eq!(
        body["query"], "since=5&limit=2",
        "only since and limit are forwarded"
    );
    assert_eq!(body["authorization"], format!("Bearer {}", token.expose()));
    // An agent that is gone: a fixed message, never the upstream's details.
    let closed = format!(
        "http://127.0.0.1:{}",
        molecule_testkit::free_port().unwrap()
    );
    let gone = registered(&s, "gone", &closed).await;
    let (status, reply) = s
        .call("GET", &format!("/workspaces/{gone}/transcript"), None, None)
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (502, Some("workspace unreachable"))
    );
    // No URL on file.
    let (status, reply) = s
        .call(
            "POST",
            "/workspaces",
            None,
            Some(json!({"name": "quiet", "runtime": "external"})),
        )
        .await;
    assert_eq!(status, 201);
    let quiet = reply["id"].as_str().unwrap();
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{quiet}/transcript"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (503, Some("workspace not registered (no URL on file)"))
    );
}

/// A stand-in for Langfuse: checks the Basic credentials and answers a page of traces
/// tagged with the workspace asked for, or a 500 with internal text.
async fn fake_langfuse(fail: bool) -> String {
    use axum::extract::RawQuery;
    let app = axum::Router::new().route(
        "/api/public/traces",
        axum::routing::get(
            move |RawQuery(q): RawQuery, headers: axum::http::HeaderMap| async move {
                use axum::response::IntoResponse;
                if fail {
                    return (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "db password=hunter2 leaked",
                    )
                        .into_response();
                }
                // "pk:sk" in base64
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some("Basic cGs6c2s=") {
                    return axum::http::StatusCode::UNAUTHORIZED.into_response();
                }
                axum::Json(json!({"data": [{"id": "trace-1", "query": q}], "meta": {"page": 1}}))
                    .into_response()
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A strict-mode server with these observability settings.
async fn observed(
    db: TestStore,
    langfuse: Option<molecule_server::observability::Langfuse>,
    salt: Option<&str>,
) -> TestServer {
    let salt = salt.map(str::to_owned);
    TestServer::start_configured(
        db,
        Options {
            backend: true,
            dev: false,
        },
        |st| st.with_observability(langfuse, salt),
    )
    .await
}

/// `GET /workspaces/:id/traces` as admin.
async fn traces_of(s: &TestServer, id: molecule_domain::WorkspaceId) -> (u16, Value) {
    let path = format!("/workspaces/{id}/traces");
    s.call("GET", &path, Some(ADMIN), None).await
}

async fn traces_come_from_langfuse_or_a_clear_503(db: TestStore) {
    let langfuse = |host: String| molecule_server::observability::Langfuse {
        host,
        public_key: "pk".into(),
        secret_key: "sk".into(),
    };
    let up = fake_langfuse(false).await;
    let down = fake_langfuse(true).await;
    let s = observed(db, Some(langfuse(up)), None).await;
    let id = s.create(json!({"name": "traced"})).await;
    let (status, page) = traces_of(&s, id).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["id"], "trace-1");
    let q = page["data"][0]["query"].as_str().unwrap();
    assert!(
        q.contains(&format!("tags={id}")) && q.contains("limit=20"),
        "{q}"
    );
    let (status, _) = s
        .call("GET", &format!("/workspaces/{id}/traces"), None, None)
        .await;
    assert_eq!(status, 401);

    let failing = observed(TestStore::sqlite().await, Some(langfuse(down)), None).await;
    let id = failing.create(json!({"name": "traced"})).await;
    let (status, reply) = traces_of(&failing, id).await;
    assert_eq!(
        (status, reply.clone()),
        (502, json!({"error": "trace service error"}))
    );
    assert!(!reply.to_string().contains("hunter2"));

    let plain = TestServer::start(
        TestStore::sqlite().await,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await;
    let id = plain.create(json!({"name": "untraced"})).await;
    let (status, reply) = traces_of(&plain, id).await;
    assert_eq!(status, 503, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("tracing is not configured")
    );
}

/// The records' HMACs as the Python runtime computes them (PBKDF2 key, `json.dumps` with
/// sorted keys and compact separators): the byte-for-byte contract of the ledger.
fn python_hmacs(salt: &str, rows: &Value) -> Vec<String> {
    let script = r#"
import hashlib, hmac, json, sys
salt, rows = sys.argv[1], json.loads(sys.argv[2])
key = hashlib.pbkdf2_hmac("sha256", salt.encode(), b"molecule-audit-ledger-v1", 210000, 32)
for r in rows:
    print(hmac.new(key, json.dumps(r, sort_keys=True, separators=(",", ":")).encode(), hashlib.sha256).hexdigest())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, salt, &rows.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A ledger record from the runtime's JSON form of it (its time a quarter second past the
/// whole second the JSON names, which the canonical form truncates).
fn audit_event(
    row: &Value,
    hmac: &str,
    ws: molecule_domain::WorkspaceId,
) -> molecule_store::AuditEvent {
    let text = |k: &str| row[k].as_str().map(str::to_owned);
    molecule_store::AuditEvent {
        id: text("id").unwrap(),
        timestamp: time::OffsetDateTime::parse(
            row["timestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
            + time::Duration::milliseconds(250),
        agent_id: text("agent_id").unwrap(),
        session_id: text("session_id").unwrap(),
        operation: text("operation").unwrap(),
        input_hash: text("input_hash"),
        output_hash: text("output_hash"),
        model_used: text("model_used"),
        human_oversight_flag: row["human_oversight_flag"].as_bool().unwrap(),
        risk_flag: row["risk_flag"].as_bool().unwrap(),
        prev_hmac: text("prev_hmac"),
        hmac: hmac.to_owned(),
        workspace_id: ws,
    }
}

async fn the_audit_chain_is_verified_as_the_runtime_writes_it(db: TestStore) {
    const SALT: &str = "ledger-salt";
    let s = observed(db, None, Some(SALT)).await;
    let ws = s.create(json!({"name": "audited"})).await;
    // Two agents interleaved; non-ASCII and quotes in a field.
    let mut rows = Vec::new();
    let mut prev: std::collections::HashMap<&str, String> = Default::default();
    let specs = [
        ("a1", "task_start", "é\"<>&"),
        ("a2", "llm_call", "m"),
        ("a1", "task_end", "x"),
    ];
    for (n, (agent, op, model)) in specs.iter().enumerate() {
        let row = json!({
            "agent_id": agent, "human_oversight_flag": n == 1, "id": format!("ev-{n}"),
            "input_hash": "ih", "model_used": model, "operation": op, "output_hash": null,
            "prev_hmac": prev.get(agent).cloned(), "risk_flag": false, "session_id": "s1",
            "timestamp": format!("2026-12-02T10:00:0{n}Z"),
        });
        let hmac = python_hmacs(SALT, &json!([row])).remove(0);
        prev.insert(agent, hmac.clone());
        rows.push((row, hmac));
    }
    for (row, hmac) in &rows {
        let event = audit_event(row, hmac, ws);
        s.state.store.audit().record(&event).await.unwrap();
    }
    let path = format!("/workspaces/{ws}/audit");
    let (status, reply) = s.call("GET", &path, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["total"], 3);
    assert_eq!(reply["events"].as_array().unwrap().len(), 3);
    assert_eq!(reply["events"][0]["id"], "ev-0");
    assert_eq!(reply["chain_valid"], true, "{reply}");
    // One agent's whole chain verifies too; windows and pages are not judged.
    let (_, reply) = s
        .call("GET", &format!("{path}?agent_id=a1"), Some(ADMIN), None)
        .await;
    assert_eq!(
        (reply["total"].as_i64(), reply["chain_valid"].as_bool()),
        (Some(2), Some(true))
    );
    for q in [
        "?offset=1",
        "?limit=1",
        "?session_id=s1",
        "?from=2026-12-02T10:00:01Z",
    ] {
        let (status, reply) = s
            .call("GET", &format!("{path}{q}"), Some(ADMIN), None)
            .await;
        assert_eq!(status, 200);
        assert!(reply["chain_valid"].is_null(), "{q}: {reply}");
    }
    let (_, reply) = s
        .call(
            "GET",
            &format!("{path}?from=2026-12-02T10:00:01Z&to=2026-12-02T10:00:02Z"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(reply["total"], 1);
    let (status, reply) = s
        .call("GET", &format!("{path}?from=yesterday"), Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (
            400,
            Some("from must be RFC 3339 (e.g. 2026-04-17T00:00:00Z)")
        )
    );
    // A tampered record breaks the chain.
    let forged = json!({
        "agent_id": "a2", "human_oversight_flag": false, "id": "ev-9", "input_hash": null,
        "model_used": null, "operation": "tool_call", "output_hash": null,
        "prev_hmac": rows[1].1, "risk_flag": false, "session_id": "s1",
        "timestamp": "2026-12-02T10:00:09Z",
    });
    let tampered = audit_event(&forged, &"0".repeat(64), ws);
    s.state.store.audit().record(&tampered).await.unwrap();
    let (_, reply) = s.call("GET", &path, Some(ADMIN), None).await;
    assert_eq!(reply["chain_valid"], false);
    // Without a salt nothing is judged.
    let other = TestServer::start(
        TestStore::sqlite().await,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await;
    let id = other.create(json!({"name": "x"})).await;
    let (_, reply) = other
        .call("GET", &format!("/workspaces/{id}/audit"), Some(ADMIN), None)
        .await;
    assert_eq!(
        reply,
        json!({"events": [], "total": 0, "chain_valid": null})
    );
}
