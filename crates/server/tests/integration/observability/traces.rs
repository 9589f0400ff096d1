//! What observability services tell about a workspace, through the server: the transcript
//! from its agent, and traces from Langfuse (or a clear 503 when none is configured).

use molecule_domain::WorkspaceId;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::observed;
use crate::common::agent::TestAgent;
use crate::common::{TestServer, assert_error, assert_json, assert_status};

on_both_backends!(
    the_transcript_comes_from_the_agent,
    traces_come_from_langfuse_or_a_clear_503,
);

async fn the_transcript_comes_from_the_agent(db: TestStore) {
    let s = TestServer::dev(db).await;
    let agent = TestAgent::start().await;
    let (id, _) = s.registered("talker", &agent.url, None).await;
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
    let (gone, _) = s.registered("gone", &closed, None).await;
    let transcript = |id: WorkspaceId| format!("/workspaces/{id}/transcript");
    let unreachable = s.call("GET", &transcript(gone), None, None).await;
    assert_error(unreachable, 502, "workspace unreachable");
    // No URL on file.
    let (quiet, _) = s.external("quiet", None).await;
    assert_error(
        s.call("GET", &transcript(quiet), None, None).await,
        503,
        "workspace not registered (no URL on file)",
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

/// `GET /workspaces/:id/traces` as admin.
async fn traces_of(s: &TestServer, id: WorkspaceId) -> (u16, Value) {
    s.admin("GET", &format!("/workspaces/{id}/traces"), None)
        .await
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
    let page = assert_status(traces_of(&s, id).await, 200);
    assert_eq!(page["data"][0]["id"], "trace-1");
    let q = page["data"][0]["query"].as_str().unwrap();
    assert!(
        q.contains(&format!("tags={id}")) && q.contains("limit=20"),
        "{q}"
    );
    let anonymous = s.call("GET", &format!("/workspaces/{id}/traces"), None, None);
    assert_status(anonymous.await, 401);

    let failing = observed(TestStore::sqlite().await, Some(langfuse(down)), None).await;
    let id = failing.create(json!({"name": "traced"})).await;
    let reply = traces_of(&failing, id).await;
    assert!(!reply.1.to_string().contains("hunter2"));
    assert_json(reply, 502, json!({"error": "trace service error"}));

    let plain = TestServer::strict(TestStore::sqlite().await).await;
    let id = plain.create(json!({"name": "untraced"})).await;
    let reply = assert_status(traces_of(&plain, id).await, 503);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("tracing is not configured")
    );
}
