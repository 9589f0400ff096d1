//! Approvals, the canvas viewport and the workspace config blob over real HTTP against the
//! real router, strict mode, both databases (`observability.md` §1.9, §1.14, §1.15).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{ADMIN, Options, TestServer};
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
