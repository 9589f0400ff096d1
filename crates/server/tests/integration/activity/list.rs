//! The activity list: its validation (in order) and filters, the shape of an item, the
//! `since_id` cursor over rows sharing a timestamp, and the session search.

use molecule_store::testing::TestStore;
use molecule_store::{NewActivity, on_both_backends};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{CURSOR_GONE, at, ids, server};
use crate::common::{assert_error, assert_status};

on_both_backends!(
    list_validation_errors,
    list_filters_and_item_shape,
    cursor_pages_rows_sharing_a_timestamp,
    session_search_finds_activity_rows,
);

async fn list_validation_errors(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("w").await;
    let (other, _) = s.stored_workspace("other").await;
    let base = format!("/workspaces/{id}/activity");
    let get = async |query: &str| {
        s.call("GET", &format!("{base}?{query}"), Some(&token), None)
            .await
    };
    let expect = async |query: &str, status: u16, error: &str| {
        let (got, reply) = get(query).await;
        assert_eq!(got, status, "{query}: {reply}");
        assert_eq!(reply, json!({ "error": error }), "{query}");
    };
    let peer = "peer_id must be a UUID";
    let before = "before_ts must be an RFC3339 timestamp (e.g. 2026-05-01T00:00:00Z)";
    let since = "since_secs must be a positive integer";
    let source = "source must be 'canvas' or 'agent'";
    expect("peer_id=abc", 400, peer).await;
    // Validation order: peer_id before before_ts before since_secs before since_id before source.
    expect("before_ts=yesterday&peer_id=abc", 400, peer).await;
    for bad in [
        "yesterday",
        "2026-05-01",
        "2026-05-01%2000:00:00Z",
        "2026-05-01T00:00:00Z'%20OR%201=1--",
    ] {
        expect(&format!("before_ts={bad}"), 400, before).await;
    }
    expect("since_secs=0&before_ts=nope", 400, before).await;
    for bad in ["0", "-5", "abc", "0x10", "60.5", "99999999999999999999"] {
        expect(&format!("since_secs={bad}"), 400, since).await;
    }
    expect(
        &format!("since_id={}&since_secs=0", Uuid::new_v4()),
        400,
        since,
    )
    .await;
    // An unknown cursor, a non-UUID one, and another workspace's are all gone.
    let foreign = s
        .state
        .store
        .activity()
        .record(&NewActivity::new(other, "a2a_receive"))
        .await
        .unwrap();
    for cursor in [
        Uuid::new_v4().to_string(),
        "not-a-uuid".into(),
        foreign.id.to_string(),
    ] {
        expect(&format!("since_id={cursor}"), 410, CURSOR_GONE).await;
    }
    expect(
        &format!("source=bogus&since_id={}", Uuid::new_v4()),
        410,
        CURSOR_GONE,
    )
    .await;
    expect("source=bogus", 400, source).await;
    expect("source=Canvas", 400, source).await;
    // Accepted forms.
    for ok in [
        "since_secs=%2B5",
        "since_secs=99999999",
        "before_ts=2026-05-01T12:00:00.123456Z",
        "before_ts=2026-05-01T12:00:00%2B02:00",
        "limit=abc",
        "limit=-1",
        "limit=9999",
        "source=canvas",
        "source=agent",
        "source=",
        "peer_id=",
    ] {
        let (status, reply) = get(ok).await;
        assert_eq!(status, 200, "{ok}: {reply}");
        assert_eq!(reply, json!([]), "{ok}");
    }
    // An invalid limit is the default 100; a large one is capped (at 500).
    for _ in 0..105 {
        s.state
            .store
            .activity()
            .record(&NewActivity::new(id, "agent_log"))
            .await
            .unwrap();
    }
    assert_eq!(ids(&get("limit=abc").await.1).len(), 100);
    assert_eq!(ids(&get("limit=0").await.1).len(), 100);
    assert_eq!(ids(&get("").await.1).len(), 100);
    assert_eq!(ids(&get("limit=9999").await.1).len(), 105);
    assert_eq!(ids(&get("limit=%2B3").await.1).len(), 3);
}

async fn list_filters_and_item_shape(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("w").await;
    let (peer, _) = s.stored_workspace("peer").await;
    let store = s.state.store.activity();
    let mut canvas = NewActivity::new(id, "a2a_receive");
    canvas.method = Some("message/send".into());
    canvas.summary = Some("message/send → w".into());
    canvas.request_body = Some(json!({"params": {"message": "hi"}}));
    canvas.response_body = Some(json!({"result": "hello"}));
    canvas.tool_trace = Some(json!([{"tool": "search"}]));
    canvas.duration_ms = Some(42);
    let canvas = store
        .record_at(
            &canvas,
            OffsetDateTime::now_utc() - time::Duration::hours(2),
        )
        .await
        .unwrap();
    let mut agent = NewActivity::new(id, "a2a_send");
    agent.source_id = Some(id);
    agent.target_id = Some(peer);
    agent.method = Some("tasks/get".into());
    agent.status = "error".into();
    agent.error_detail = Some("timeout".into());
    let agent = store.record(&agent).await.unwrap();

    let get = async |query: &str| {
        let path = format!("/workspaces/{id}/activity?{query}");
        let (status, reply) = s.call("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{query}: {reply}");
        reply
    };
    let all = get("").await;
    assert_eq!(ids(&all), vec![agent.id.to_string(), canvas.id.to_string()]);
    let first = &all[0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![
            "activity_type",
            "created_at",
            "duration_ms",
            "error_detail",
            "id",
            "method",
            "source_id",
            "status",
            "summary",
            "target_id",
            "workspace_id",
        ],
        "null bodies are absent, other fields present"
    );
    assert_eq!(first["source_id"], json!(id));
    assert_eq!(first["target_id"], json!(peer));
    assert_eq!(first["summary"], Value::Null);
    assert_eq!(first["duration_ms"], Value::Null);
    assert_eq!(first["status"], "error");
    assert_eq!(first["error_detail"], "timeout");
    let created = OffsetDateTime::parse(
        first["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(created, agent.created_at);
    let second = &all[1];
    assert_eq!(second["request_body"], json!({"params": {"message": "hi"}}));
    assert_eq!(second["response_body"], json!({"result": "hello"}));
    assert_eq!(second["tool_trace"], json!([{"tool": "search"}]));
    assert_eq!(second["source_id"], Value::Null);
    assert_eq!(second["duration_ms"], 42);

    assert_eq!(
        ids(&get("type=a2a_receive&source=canvas").await),
        vec![canvas.id.to_string()]
    );
    assert_eq!(ids(&get("source=agent").await), vec![agent.id.to_string()]);
    assert_eq!(
        ids(&get(&format!("peer_id={peer}")).await),
        vec![agent.id.to_string()]
    );
    assert_eq!(
        ids(&get("method=message/send").await),
        vec![canvas.id.to_string()]
    );
    assert_eq!(
        ids(&get("since_secs=3600").await),
        vec![agent.id.to_string()]
    );
    let before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let before = before
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(
        ids(&get(&format!("before_ts={}", before.replace('+', "%2B"))).await),
        vec![canvas.id.to_string()]
    );
    assert!(ids(&get("type=delegation").await).is_empty());
}

async fn cursor_pages_rows_sharing_a_timestamp(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("w").await;
    let store = s.state.store.activity();
    let first = store
        .record_at(&NewActivity::new(id, "a2a_receive"), at(0))
        .await
        .unwrap();
    let mut rest = Vec::new();
    for _ in 0..6 {
        rest.push(
            store
                .record_at(&NewActivity::new(id, "a2a_receive"), at(1))
                .await
                .unwrap(),
        );
    }
    rest.push(
        store
            .record_at(&NewActivity::new(id, "a2a_receive"), at(2))
            .await
            .unwrap(),
    );
    // Another type between them is filtered out, not counted.
    store
        .record_at(&NewActivity::new(id, "agent_log"), at(1))
        .await
        .unwrap();
    rest.sort_by_key(|r| (r.created_at, r.id));
    let expected: Vec<String> = rest.iter().map(|r| r.id.to_string()).collect();

    let mut cursor = first.id.to_string();
    let mut seen = Vec::new();
    loop {
        let path = format!("/workspaces/{id}/activity?type=a2a_receive&since_id={cursor}&limit=2");
        let reply = assert_status(s.call("GET", &path, Some(&token), None).await, 200);
        let page = ids(&reply);
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = last.clone();
        seen.extend(page);
    }
    assert_eq!(seen, expected, "oldest first, nothing skipped or repeated");

    // A pruned cursor is gone too.
    store.prune_older_than(at(1)).await.unwrap();
    let path = format!("/workspaces/{id}/activity?since_id={}", first.id);
    assert_error(
        s.call("GET", &path, Some(&token), None).await,
        410,
        CURSOR_GONE,
    );
}

async fn session_search_finds_activity_rows(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.stored_workspace("w").await;
    let (other, _) = s.stored_workspace("other").await;
    let store = s.state.store.activity();
    let mut hit = NewActivity::new(id, "a2a_receive");
    hit.summary = Some("The Quarterly REPORT".into());
    hit.method = Some("message/send".into());
    hit.request_body = Some(json!({"q": 1}));
    let hit = store.record_at(&hit, at(1)).await.unwrap();
    let mut body_hit = NewActivity::new(id, "agent_log");
    body_hit.response_body = Some(json!({"text": "see report.pdf"}));
    let body_hit = store.record_at(&body_hit, at(2)).await.unwrap();
    let bare = store
        .record_at(&NewActivity::new(id, "task_update"), at(3))
        .await
        .unwrap();
    let mut foreign = NewActivity::new(other, "a2a_receive");
    foreign.summary = Some("report".into());
    store.record(&foreign).await.unwrap();

    let search = async |query: &str| {
        let path = format!("/workspaces/{id}/session-search?{query}");
        let (status, reply) = s.call("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{query}: {reply}");
        reply
    };
    let found = search("q=%20report%20").await;
    assert_eq!(
        ids(&found),
        vec![body_hit.id.to_string(), hit.id.to_string()]
    );
    assert_eq!(
        found[1],
        json!({
            "kind": "activity",
            "id": hit.id,
            "workspace_id": id,
            "label": "a2a_receive",
            "content": "The Quarterly REPORT",
            "method": "message/send",
            "status": "ok",
            "created_at": "2027-01-15T08:00:01Z",
            "request_body": {"q": 1},
        })
    );
    let all = search("").await;
    assert_eq!(
        ids(&all),
        vec![
            bare.id.to_string(),
            body_hit.id.to_string(),
            hit.id.to_string()
        ]
    );
    assert_eq!(all[0]["content"], "");
    assert_eq!(all[0]["method"], "");
    assert!(all[0].get("request_body").is_none());
    assert_eq!(ids(&search("limit=1").await).len(), 1);
    assert_eq!(ids(&search("limit=abc").await).len(), 3);
    assert!(ids(&search("q=nothing-like-this").await).is_empty());
}
