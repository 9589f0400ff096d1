//! Approvals: an agent asks, the canvas hears it (also escalated to the parent), a person
//! decides once; bad input is refused and an old request expires.

use futures_util::StreamExt;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{ADMIN, TestServer, WITHIN, assert_error, assert_json, assert_status};

on_both_backends!(
    an_agent_asks_and_a_person_decides_once,
    approvals_refuse_bad_input_and_expire,
);

/// The next event of `kind` on a canvas `/ws` connection (bounded wait).
async fn next_on_socket<S>(ws: &mut S, kind: &str) -> Value
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
    tokio::time::timeout(WITHIN, wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} event on /ws"))
}

async fn an_agent_asks_and_a_person_decides_once(db: TestStore) {
    let s = TestServer::strict(db).await;
    let lead = s.create(json!({"name": "lead"})).await;
    let agent = s.create(json!({"name": "agent", "parent_id": lead})).await;
    let token = s.backend().token_of(agent).await;
    // The canvas listens on /ws with the admin token.
    let ws_url = format!("{}/ws?token={ADMIN}", s.base.replacen("http", "ws", 1));
    let (mut canvas, _) = tokio_tungstenite::connect_async(ws_url.into_client_request().unwrap())
        .await
        .unwrap();

    let approvals = format!("/workspaces/{agent}/approvals");
    let ask = json!({"action": "deploy to prod", "reason": "release 1.2", "task_id": "t-9",
                     "context": {"pr": 42}});
    let reply = assert_status(
        s.call("POST", &approvals, Some(&token), Some(ask)).await,
        201,
    );
    assert_eq!(reply["status"], "pending");
    let id = reply["approval_id"].as_str().unwrap().to_owned();
    let requested = next_on_socket(&mut canvas, "APPROVAL_REQUESTED").await;
    assert_eq!(requested["workspace_id"], agent.to_string());
    assert_eq!(requested["payload"]["approval_id"], id.as_str());
    assert_eq!(requested["payload"]["action"], "deploy to prod");
    let escalated = next_on_socket(&mut canvas, "APPROVAL_ESCALATED").await;
    assert_eq!(escalated["workspace_id"], lead.to_string());
    assert_eq!(escalated["payload"]["from_workspace_id"], agent.to_string());

    // The canvas's poll shows it, with the workspace's name.
    let pending = assert_status(s.admin("GET", "/approvals/pending", None).await, 200);
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
    let approve = json!({"decision": "approved"});
    let by_itself = s.call("POST", &decide, Some(&token), Some(approve.clone()));
    assert_status(by_itself.await, 403);
    // A person decides, once.
    let by_ana = Some(json!({"decision": "approved", "decided_by": "ana"}));
    assert_json(
        s.admin("POST", &decide, by_ana).await,
        200,
        json!({"status": "approved", "approval_id": id}),
    );
    let approved = next_on_socket(&mut canvas, "APPROVAL_APPROVED").await;
    assert_eq!(approved["payload"]["decided_by"], "ana");
    let denied = s.admin("POST", &decide, Some(json!({"decision": "denied"})));
    assert_error(denied.await, 409, "approval already decided");
    let (_, list) = s.call("GET", &approvals, Some(&token), None).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0]["status"], "approved",
        "the second decision changed nothing"
    );
    assert_eq!(list[0]["decided_by"], "ana");
    assert!(list[0]["decided_at"].is_string());
    let (_, pending) = s.admin("GET", "/approvals/pending", None).await;
    assert!(pending.as_array().unwrap().is_empty());
}

async fn approvals_refuse_bad_input_and_expire(db: TestStore) {
    let s = TestServer::strict(db).await;
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
        let (status, reply) = s.admin("POST", &path, Some(body.clone())).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
    let action = Some(json!({"action": "x"}));
    let invalid = s.admin("POST", "/workspaces/not-a-uuid/approvals", action.clone());
    assert_status(invalid.await, 400);
    let unknown = format!(
        "/workspaces/{}/approvals",
        molecule_domain::WorkspaceId::new()
    );
    assert_status(s.admin("POST", &unknown, action.clone()).await, 404);
    let (_, list) = s.admin("GET", &path, None).await;
    assert!(list.as_array().unwrap().is_empty(), "nothing was written");

    let (_, reply) = s.admin("POST", &path, action).await;
    let id = reply["approval_id"].as_str().unwrap().to_owned();
    let decide = format!("/workspaces/{agent}/approvals/{id}/decide");
    let approve = Some(json!({"decision": "approved"}));
    for (body, status, error) in [
        (json!({}), 400, "invalid request body"),
        (
            json!({"decision": "maybe"}),
            400,
            "decision must be 'approved' or 'denied'",
        ),
    ] {
        let (got, reply) = s.admin("POST", &decide, Some(body)).await;
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
        let (status, reply) = s.admin("POST", &path, approve.clone()).await;
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
    let late = s.admin("POST", &decide, approve).await;
    assert_error(late, 409, "approval already decided");
}
