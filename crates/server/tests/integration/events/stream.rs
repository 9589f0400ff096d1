//! The SSE stream of one workspace's events and its refusals, and the structure-event log
//! (`/events`), newest first.

use molecule_domain::{EventType, WorkspaceId};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::{ADMIN, BOUND, strict, workspace};

on_both_backends!(
    sse_stream_sends_this_workspace_events_only,
    sse_stream_refusals,
    event_log_lists_recorded_events_newest_first,
);

/// Reads an SSE body until it holds `blocks` blank-line-terminated blocks.
async fn read_blocks(response: &mut reqwest::Response, blocks: usize) -> String {
    let mut text = String::new();
    while text.matches("\n\n").count() < blocks {
        let chunk = tokio::time::timeout(BOUND, response.chunk())
            .await
            .expect("SSE data in time")
            .unwrap()
            .expect("the stream is open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

async fn sse_stream_sends_this_workspace_events_only(s: TestStore) {
    let server = strict(&s).await;
    let w = workspace(&s, "w", None).await;
    let other = workspace(&s, "other", None).await;
    let token = s.tokens().issue(w).await.unwrap().token;
    let stream = format!("/workspaces/{w}/events/stream");
    let mut response = server.get(&stream, Some(token.expose())).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(read_blocks(&mut response, 1).await, ": ping\n\n");

    server
        .emit(EventType::WorkspaceOnline, Some(other), json!({"n": 0}))
        .await;
    server
        .emit(EventType::WorkspaceOnline, Some(w), json!({"n": 1}))
        .await;
    server
        .emit(
            EventType::TaskUpdated,
            Some(w),
            json!({"current_task": "x", "active_tasks": 1}),
        )
        .await;
    let text = read_blocks(&mut response, 2).await;
    let lines: Vec<&str> = text.strip_suffix("\n\n").unwrap().split("\n\n").collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first = lines[0].strip_prefix("data: ").unwrap();
    assert!(
        first.starts_with(r#"{"type":"WORKSPACE_ONLINE","timestamp":"#),
        "{first}"
    );
    let first: Value = serde_json::from_str(first).unwrap();
    assert_eq!(first["data"], json!({"n": 1}));
    let ms = first["timestamp"].as_i64().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    assert!((now - ms).abs() < 60_000, "{ms} is unix milliseconds");
    let second: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(second["type"], "TASK_UPDATED");
    assert_eq!(second["data"]["current_task"], "x");

    // The admin token opens the stream too.
    assert_eq!(server.get(&stream, Some(ADMIN)).await.status(), 200);
}

async fn sse_stream_refusals(s: TestStore) {
    let server = strict(&s).await;
    let w = workspace(&s, "w", None).await;
    let other = workspace(&s, "other", None).await;
    let other_token = s.tokens().issue(other).await.unwrap().token;
    let get = async |id: String, bearer: Option<String>| {
        let stream = format!("/workspaces/{id}/events/stream");
        let response = server.get(&stream, bearer.as_deref()).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["error"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        get(w.to_string(), None).await,
        (401, "missing workspace auth token".into())
    );
    assert_eq!(
        get(w.to_string(), Some(other_token.expose().to_owned())).await,
        (401, "invalid workspace auth token".into())
    );
    assert_eq!(
        get(WorkspaceId::new().to_string(), Some(ADMIN.into())).await,
        (404, "workspace not found".into())
    );
    assert_eq!(
        get("nope".into(), Some(ADMIN.into())).await,
        (400, "invalid workspace ID".into())
    );
}

// ---- /events ----

async fn event_log_lists_recorded_events_newest_first(s: TestStore) {
    let server = strict(&s).await;
    let w1 = workspace(&s, "w1", None).await;
    let w2 = workspace(&s, "w2", None).await;
    server
        .emit(
            EventType::WorkspaceProvisioning,
            Some(w1),
            json!({"name": "w1"}),
        )
        .await;
    server
        .emit(EventType::WorkspaceOnline, Some(w2), json!({"url": "u"}))
        .await;
    server
        .emit(EventType::CronSkipped, None, json!({"reason": "r"}))
        .await;
    // Broadcast-only: never in the log.
    server
        .emit(EventType::WorkspaceHeartbeat, Some(w1), json!({}))
        .await;
    let get = async |path: &str, bearer: Option<&str>| {
        let response = server.get(path, bearer).await;
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };
    let (status, all) = get("/events", Some(ADMIN)).await;
    assert_eq!(status, 200);
    let all = all.as_array().unwrap();
    let types: Vec<&str> = all
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["CRON_SKIPPED", "WORKSPACE_ONLINE", "WORKSPACE_PROVISIONING"]
    );
    assert_eq!(all[0]["workspace_id"], Value::Null);
    assert_eq!(all[1]["workspace_id"], w2.to_string());
    assert_eq!(all[1]["payload"], json!({"url": "u"}));
    let item = all[2].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "event_type", "id", "payload", "workspace_id"]
    );
    assert!(uuid_like(item["id"].as_str().unwrap()));
    let created = item["created_at"].as_str().unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339).unwrap();

    let (status, one) = get(&format!("/events/{w1}"), Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["event_type"], "WORKSPACE_PROVISIONING");

    // At most 100, newest first.
    for i in 0..101 {
        server
            .emit(EventType::WorkspaceOnline, Some(w1), json!({"i": i}))
            .await;
    }
    let (_, many) = get(&format!("/events/{w1}"), Some(ADMIN)).await;
    assert_eq!(many.as_array().unwrap().len(), 100);
    assert_eq!(many[0]["payload"]["i"], 100);

    assert_eq!(
        get("/events/not-a-uuid", Some(ADMIN)).await,
        (400, json!({"error": "invalid workspace ID"}))
    );
    assert_eq!(
        get("/events", None).await,
        (401, json!({"error": "admin auth required"}))
    );
    assert_eq!(
        get(&format!("/events/{w1}"), Some("nope")).await,
        (401, json!({"error": "invalid admin auth token"}))
    );
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.parse::<WorkspaceId>().is_ok()
}
