//! What agents report: activity rows (validated, stored, broadcast) and notifications
//! (broadcast and kept for the chat history), and who may call these routes.

use std::sync::Arc;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_server::events::Envelope;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::server;
use crate::common::{
    ADMIN, Events, Options, TestServer, assert_error, assert_json, assert_status, next_event_where,
};

/// The next event of one of `names`, skipping others.
async fn next_of(rx: &mut Events, names: &[&str]) -> Arc<Envelope> {
    next_event_where(rx, &names.join(" or "), |e| {
        names.contains(&e.event.as_str())
    })
    .await
}

on_both_backends!(
    self_report_is_validated_stored_and_broadcast,
    notify_broadcasts_and_persists,
    notify_validation_and_missing_workspace,
    routes_need_credentials_outside_dev_mode,
);

async fn self_report_is_validated_stored_and_broadcast(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("w").await;
    let (peer, _) = s.stored_workspace("peer").await;
    let path = format!("/workspaces/{id}/activity");
    let post = async |body: Value| s.call("POST", &path, Some(&token), Some(body)).await;
    let mut events = s.events();

    let reply = post(json!({
        "activity_type": "a2a_send",
        "method": "message/send",
        "summary": "asked the peer",
        "target_id": peer.to_string(),
        "duration_ms": 17,
        "metadata": {"trace": "abc"},
        "response_body": {"ok": true},
        "error_detail": "",
    }))
    .await;
    assert_json(reply, 200, json!({"status": "logged"}));
    let e = next_of(&mut events, &["ACTIVITY_LOGGED"]).await;
    assert_eq!(e.workspace_id, id.to_string());
    assert_eq!(
        e.payload,
        json!({
            "activity_type": "a2a_send",
            "method": "message/send",
            "summary": "asked the peer",
            "status": "ok",
            "source_id": id,
            "target_id": peer,
            "duration_ms": 17,
            "request_body": {"trace": "abc"},
            "response_body": {"ok": true},
        })
    );
    let rows = s.activity_of(id).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.source_id, Some(id), "source defaults to the workspace");
    assert_eq!(row.request_body, Some(json!({"trace": "abc"})));
    assert_eq!(row.error_detail, None, "empty strings are NULL");
    assert_eq!(row.status, "ok");

    // The same source id is accepted; memory_write is one of the seven.
    let memory = json!({"activity_type": "memory_write", "source_id": id.to_string()});
    assert_status(post(memory).await, 200);
    let e = next_of(&mut events, &["ACTIVITY_LOGGED"]).await;
    let keys = e.payload.as_object().unwrap();
    assert!(!keys.contains_key("request_body") && !keys.contains_key("response_body"));
    assert!(!keys.contains_key("tool_trace"));

    // Refusals: nothing is stored.
    let cases = [
        (json!({}), 400, "invalid request body"),
        (json!({"activity_type": ""}), 400, "invalid request body"),
        (json!({"activity_type": 5}), 400, "invalid request body"),
        (
            json!({"activity_type": "agent_log", "duration_ms": "slow"}),
            400,
            "invalid request body",
        ),
        (
            json!({"activity_type": "delegation"}),
            400,
            "invalid activity_type, must be one of: a2a_send, a2a_receive, task_update, \
             agent_log, skill_promotion, memory_write, error",
        ),
        (
            json!({"activity_type": "agent_log", "source_id": peer.to_string()}),
            403,
            "source_id must match authenticated workspace",
        ),
        (
            json!({"activity_type": "agent_log", "source_id": "evil\n\u{1b}[31mline"}),
            403,
            "source_id must match authenticated workspace",
        ),
        (
            json!({"activity_type": "agent_log", "target_id": "not-a-uuid"}),
            400,
            "target_id must be a UUID",
        ),
    ];
    for (body, status, error) in cases {
        let (got, reply) = post(body.clone()).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert_eq!(reply, json!({ "error": error }), "{body}");
    }
    let raw = s.call_raw("POST", &path, Some(&token), "{not json").await;
    assert_error(raw, 400, "invalid request body");
    assert_eq!(s.activity_of(id).await.len(), 2);

    // A workspace that does not exist (the admin token passes the guard): the insert fails
    // and the answer says so.
    let ghost = WorkspaceId::new();
    let log = Some(json!({"activity_type": "agent_log"}));
    let logged = s.admin("POST", &format!("/workspaces/{ghost}/activity"), log);
    assert_error(logged.await, 404, "workspace not found");
}

async fn notify_broadcasts_and_persists(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("Zoë's agent").await;
    let mut events = s.events();
    // 79 ASCII bytes, then a two-byte character straddling the 80-byte cut.
    let message = format!("{}éand more", "m".repeat(79));
    let notify = format!("/workspaces/{id}/notify");
    let body = json!({
        "message": message,
        "attachments": [
            {"uri": "workspace:/out/report.pdf", "name": "report.pdf",
             "mimeType": "application/pdf", "size": 1234},
            {"uri": "workspace:/out/a.txt", "name": "a.txt", "mimeType": "", "size": 0},
        ],
    });
    let sent = s.call("POST", &notify, Some(&token), Some(body)).await;
    assert_json(sent, 200, json!({"status": "sent"}));
    let files = json!([
        {"uri": "workspace:/out/report.pdf", "name": "report.pdf",
         "mimeType": "application/pdf", "size": 1234},
        {"uri": "workspace:/out/a.txt", "name": "a.txt"},
    ]);
    let e = next_of(&mut events, &["AGENT_MESSAGE", "ACTIVITY_LOGGED"]).await;
    assert_eq!(e.event, "AGENT_MESSAGE");
    assert_eq!(e.workspace_id, id.to_string());
    assert_eq!(
        e.payload,
        json!({"message": message, "workspace_id": id, "name": "Zoë's agent", "attachments": files})
    );

    // Persisted for the chat history (canvas-sourced a2a_receive), without ACTIVITY_LOGGED: the
    // next such event is the one of the report below.
    let history = format!("/workspaces/{id}/activity?type=a2a_receive&source=canvas");
    let reply = assert_status(s.call("GET", &history, Some(&token), None).await, 200);
    let items = reply.as_array().unwrap();
    assert_eq!(items.len(), 1, "{reply}");
    let item = &items[0];
    assert_eq!(item["method"], "notify");
    assert_eq!(item["status"], "ok");
    assert_eq!(item["source_id"], Value::Null);
    assert_eq!(
        item["summary"],
        format!("Agent message: {}…", "m".repeat(79))
    );
    assert!(item.get("request_body").is_none());
    let parts: Vec<Value> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!({"kind": "file", "file": f}))
        .collect();
    assert_eq!(
        item["response_body"],
        json!({"result": message, "parts": parts})
    );
    let report = Some(json!({"activity_type": "agent_log", "summary": "after"}));
    let reported = s.call(
        "POST",
        &format!("/workspaces/{id}/activity"),
        Some(&token),
        report,
    );
    assert_status(reported.await, 200);
    let e = next_of(&mut events, &["AGENT_MESSAGE", "ACTIVITY_LOGGED"]).await;
    assert_eq!(e.event, "ACTIVITY_LOGGED");
    assert_eq!(
        e.payload["summary"], "after",
        "notify logged no ACTIVITY_LOGGED"
    );

    // Without attachments: no `attachments` key, no `parts`; a short message is not cut.
    let done = Some(json!({"message": "done", "attachments": []}));
    assert_status(s.call("POST", &notify, Some(&token), done).await, 200);
    let e = next_of(&mut events, &["AGENT_MESSAGE"]).await;
    assert_eq!(
        e.payload,
        json!({"message": "done", "workspace_id": id, "name": "Zoë's agent"})
    );
    let rows = s
        .state
        .store
        .activity()
        .search(id, Some("Agent message: done"), 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].summary.as_deref(), Some("Agent message: done"));
    assert_eq!(rows[0].response_body, Some(json!({"result": "done"})));
}

async fn notify_validation_and_missing_workspace(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("w").await;
    let path = format!("/workspaces/{id}/notify");
    let mut events = s.events();
    let cases = [
        (json!({}), "message is required"),
        (json!({"message": ""}), "message is required"),
        (json!({"message": 7}), "message is required"),
        (
            json!({"message": "m", "attachments": [{"uri": "u", "name": "n"}, {"uri": "u"}]}),
            "attachment[1]: uri and name are required",
        ),
        (
            json!({"message": "m", "attachments": [{"uri": "", "name": "n"}]}),
            "attachment[0]: uri and name are required",
        ),
    ];
    for (body, error) in cases {
        let (status, reply) = s
            .call("POST", &path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply, json!({ "error": error }), "{body}");
    }
    let raw = s.call_raw("POST", &path, Some(&token), "nope").await;
    assert_error(raw, 400, "message is required");
    // None of them was broadcast: the first AGENT_MESSAGE is the valid one below.
    let valid = Some(json!({"message": "valid"}));
    assert_status(s.call("POST", &path, Some(&token), valid).await, 200);
    let e = next_of(&mut events, &["AGENT_MESSAGE"]).await;
    assert_eq!(e.payload["message"], "valid");
    assert!(
        s.state
            .store
            .activity()
            .search(id, Some("Agent message: m"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A removed or unknown workspace.
    s.set_status(id, WorkspaceStatus::Removed).await;
    let not_found = json!({"error": "workspace not found"});
    let late = s.admin("POST", &path, Some(json!({"message": "late"})));
    assert_json(late.await, 404, not_found.clone());
    let unknown = format!("/workspaces/{}/notify", WorkspaceId::new());
    let nobody = s.admin("POST", &unknown, Some(json!({"message": "nobody"})));
    assert_json(nobody.await, 404, not_found);
}

async fn routes_need_credentials_outside_dev_mode(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("w").await;
    let (_, other_token) = s.stored_workspace("other").await;
    let routes = [
        ("GET", format!("/workspaces/{id}/activity"), None),
        (
            "POST",
            format!("/workspaces/{id}/activity"),
            Some(json!({"activity_type": "agent_log"})),
        ),
        (
            "POST",
            format!("/workspaces/{id}/notify"),
            Some(json!({"message": "hi"})),
        ),
        ("GET", format!("/workspaces/{id}/session-search"), None),
    ];
    for (method, path, body) in &routes {
        let (status, reply) = s.call(method, path, None, body.clone()).await;
        assert_eq!(status, 401, "{method} {path}: {reply}");
        assert_eq!(reply["error"], "missing workspace auth token");
        let (status, reply) = s.call(method, path, Some(&other_token), body.clone()).await;
        assert_eq!(status, 401, "{method} {path}: {reply}");
        assert_eq!(reply["error"], "invalid workspace auth token");
        for good in [token.as_str(), ADMIN] {
            let (status, reply) = s.call(method, path, Some(good), body.clone()).await;
            assert_eq!(status, 200, "{method} {path}: {reply}");
        }
    }
    let backend = s.state.store.backend();
    drop(s);

    // Dev mode: no credential needed.
    let options = Options {
        backend: false,
        ..Options::DEV
    };
    let dev = TestServer::start(TestStore::of(backend).await, options).await;
    let (id, _) = dev.stored_workspace("w").await;
    let list = dev.call("GET", &format!("/workspaces/{id}/activity"), None, None);
    assert_json(list.await, 200, json!([]));
}
