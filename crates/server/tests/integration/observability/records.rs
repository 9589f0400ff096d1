//! What the canvas and agents keep about a workspace: the canvas viewport, the config blob
//! (top-level keys merged), agent records (assigned, replaced, moved, removed) and the token
//! usage a real agent reports.

use molecule_domain::WorkspaceId;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::agent::{Answer, TestAgent};
use crate::common::{ADMIN, TestServer, assert_error, assert_json, assert_status, poll};

on_both_backends!(
    the_viewport_is_saved_and_validated,
    the_config_blob_merges_top_level_keys,
    agent_records_are_assigned_replaced_moved_and_removed,
    usage_reported_by_a_real_agent_is_summed,
);

async fn the_viewport_is_saved_and_validated(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (status, v) = s.call("GET", "/canvas/viewport", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"x": 0.0, "y": 0.0, "zoom": 1.0}));
    let anonymous = Some(json!({"x": 1, "y": 2, "zoom": 1.5}));
    assert_status(
        s.call("PUT", "/canvas/viewport", None, anonymous).await,
        401,
    );
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
        let put = s
            .admin("PUT", "/canvas/viewport", Some(saved.clone()))
            .await;
        assert_json(put, 200, json!({"status": "saved"}));
        let (_, v) = s.call("GET", "/canvas/viewport", None, None).await;
        for k in ["x", "y", "zoom"] {
            assert_eq!(v[k].as_f64(), saved[k].as_f64(), "{k}");
        }
    }
}

async fn the_config_blob_merges_top_level_keys(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "configured"})).await;
    let bearer = s.backend().token_of(id).await;
    let path = format!("/workspaces/{id}/config");
    let token = Some(bearer.as_str());
    assert_json(
        s.call("GET", &path, token, None).await,
        200,
        json!({"data": {}}),
    );
    let first = Some(json!({"a": 1, "nested": {"x": 1, "y": 2}}));
    let patched = s.call("PATCH", &path, token, first).await;
    assert_json(patched, 200, json!({"status": "updated"}));
    let second = Some(json!({"nested": {"x": 9}, "b": true}));
    assert_status(s.call("PATCH", &path, token, second).await, 200);
    let (_, reply) = s.admin("GET", &path, None).await;
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
            .bearer_auth(&bearer)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], error);
    }
    let (_, reply) = s.admin("GET", &path, None).await;
    assert_eq!(reply["data"]["a"], 1);
    assert!(reply["data"].get("big").is_none());
    // Another workspace's token cannot read or write it; an unknown workspace is 404.
    let other = s.create(json!({"name": "other"})).await;
    let other_token = s.backend().token_of(other).await;
    let (status, _) = s.call("GET", &path, Some(&other_token), None).await;
    assert_eq!(status, 401);
    let unknown = format!("/workspaces/{}/config", WorkspaceId::new());
    assert_status(s.admin("PATCH", &unknown, Some(json!({"a": 1}))).await, 404);
}

async fn agent_records_are_assigned_replaced_moved_and_removed(db: TestStore) {
    let s = TestServer::strict(db).await;
    let a = s.create(json!({"name": "a"})).await;
    let b = s.create(json!({"name": "b"})).await;
    let token = s.backend().token_of(a).await;
    let path = format!("/workspaces/{a}/agent");
    let as_agent =
        async |method: &str, body: Option<Value>| s.call(method, &path, Some(&token), body).await;
    for body in [json!({}), json!({"model": ""}), json!({"model": "x\ny"})] {
        let (status, _) = as_agent("POST", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}");
    }
    let model = |name: &str| Some(json!({ "model": name }));
    let replaced = as_agent("PATCH", model("m")).await;
    assert_error(replaced, 404, "no active agent to replace");
    let reply = assert_status(as_agent("POST", model("claude-a")).await, 201);
    assert_eq!(reply["model"], "claude-a");
    let first = reply["agent_id"].as_str().unwrap().to_owned();
    assert_error(
        as_agent("POST", model("claude-b")).await,
        409,
        "workspace already has an active agent, use PATCH to replace",
    );
    let reply = assert_status(as_agent("PATCH", model("claude-b")).await, 200);
    assert_eq!(reply["old_model"], "claude-a");
    assert_ne!(reply["agent_id"], first.as_str());
    // Moving needs a person: a workspace token cannot push its agent elsewhere.
    let move_path = format!("/workspaces/{a}/agent/move");
    let to = |id: WorkspaceId| Some(json!({ "target_workspace_id": id }));
    assert_status(s.call("POST", &move_path, Some(&token), to(b)).await, 403);
    let unknown = WorkspaceId::new();
    let nowhere = s.admin("POST", &move_path, to(unknown)).await;
    assert_error(nowhere, 404, "target workspace not found");
    let reply = assert_status(s.admin("POST", &move_path, to(b)).await, 200);
    assert_eq!(reply["model"], "claude-b");
    assert_eq!(reply["to_workspace"], b.to_string());
    let agents = s.state.store.agents();
    assert!(agents.active(a).await.unwrap().is_none());
    let moved = agents.active(b).await.unwrap().unwrap();
    assert_eq!(moved.model.as_deref(), Some("claude-b"));
    let back = format!("/workspaces/{b}/agent/move");
    assert_status(s.admin("POST", &back, to(a)).await, 200);
    let again = s.admin("POST", &back, to(a)).await;
    assert_error(again, 409, "target workspace already has an active agent");
    let reply = assert_status(as_agent("DELETE", None).await, 200);
    assert_eq!(reply["status"], "removed");
    assert_error(
        as_agent("DELETE", None).await,
        404,
        "no active agent to remove",
    );
    let unknown_agent = format!("/workspaces/{unknown}/agent");
    assert_status(s.admin("POST", &unknown_agent, model("m")).await, 404);
}

async fn usage_reported_by_a_real_agent_is_summed(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (id, _) = s.registered("counted", &agent.url, None).await;
    let metrics = format!("/workspaces/{id}/metrics");
    let m = assert_status(s.call("GET", &metrics, None, None).await, 200);
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
        let sent = s.call("POST", &format!("/workspaces/{id}/a2a"), None, Some(body));
        assert_status(sent.await, 200);
    }
    // Written off the hot path: wait (bounded) for the writer.
    let m = poll("usage recorded", || async {
        let (_, m) = s.call("GET", &metrics, None, None).await;
        (m["total_calls"] == 2).then_some(m)
    })
    .await;
    assert_eq!(m["input_tokens"], 1500);
    assert_eq!(m["output_tokens"], 300);
    // 1500 × 0.000003 + 300 × 0.000015
    assert_eq!(m["estimated_cost_usd"], "0.009000");
    let start = m["period_start"].as_str().unwrap();
    assert!(start.ends_with("T00:00:00Z"), "{start}");
    let unknown = format!("/workspaces/{}/metrics", WorkspaceId::new());
    assert_status(s.call("GET", &unknown, None, None).await, 404);
}
