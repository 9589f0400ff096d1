//! The activity routes over real HTTP against the real router, on both databases: the list's
//! validation and filters, the `since_id` cursor, agents' self-reports, notifications, the
//! session search, and who may call them.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{ADMIN, Options, TestServer};
use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_server::events::Envelope;
use molecule_store::testing::TestStore;
use molecule_store::{NewActivity, NewWorkspace, on_both_backends};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

on_both_backends!(
    list_validation_errors,
    list_filters_and_item_shape,
    cursor_pages_rows_sharing_a_timestamp,
    self_report_is_validated_stored_and_broadcast,
    notify_broadcasts_and_persists,
    notify_validation_and_missing_workspace,
    session_search_finds_activity_rows,
    routes_need_credentials_outside_dev_mode,
);

/// An upper bound for anything awaited; never a synchronisation.
const BOUND: Duration = Duration::from_secs(15);

const CURSOR_GONE: &str = "since_id cursor not found (row may have been pruned or belongs to a \
     different workspace); omit since_id to reset";

async fn strict(db: TestStore) -> TestServer {
    TestServer::start(
        db,
        Options {
            backend: false,
            dev: false,
        },
    )
    .await
}

/// A workspace written directly (no provisioning) and a live token of it.
async fn workspace(s: &TestServer, name: &str) -> (WorkspaceId, String) {
    let id = s
        .state
        .store
        .workspaces()
        .create(NewWorkspace::named(name))
        .await
        .unwrap()
        .id;
    let token = s.state.store.tokens().issue(id).await.unwrap().token;
    (id, token.expose().to_owned())
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

/// The next event named `name`, skipping others.
async fn next_event(rx: &mut broadcast::Receiver<Arc<Envelope>>, name: &str) -> Envelope {
    tokio::time::timeout(BOUND, async {
        loop {
            let e = rx.recv().await.unwrap();
            if e.event == name {
                return (*e).clone();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event"))
}

/// The next event of one of `names`, skipping others.
async fn next_of(rx: &mut broadcast::Receiver<Arc<Envelope>>, names: &[&str]) -> Envelope {
    tokio::time::timeout(BOUND, async {
        loop {
            let e = rx.recv().await.unwrap();
            if names.contains(&e.event.as_str()) {
                return (*e).clone();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("none of {names:?}"))
}

fn ids(reply: &Value) -> Vec<String> {
    reply
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {reply}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn list_validation_errors(db: TestStore) {
    let s = strict(db).await;
    let (id, token) = workspace(&s, "w").await;
    let (other, _) = workspace(&s, "other").await;
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
    let s = strict(db).await;
    let (id, token) = workspace(&s, "w").await;
    let (peer, _) = workspace(&s, "peer").await;
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
        let (status, reply) = s
            .call(
                "GET",
                &format!("/workspaces/{id}/activity?{query}"),
                Some(&token),
                None,
            )
            .await;
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
    let s = strict(db).await;
    let (id, token) = workspace(&s, "w").await;
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
        let (status, reply) = s
            .call(
                "GET",
                &format!("/workspaces/{id}/activity?type=a2a_receive&since_id={cursor}&limit=2"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        let page = ids(&reply);
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = last.clone();
        seen.extend(page);
    }
    assert_eq!(seen, expected, "oldest first, nothing skipped or repeated");

    // A pruned cursor is gone too.
    store.prune_older_than(at(1)).await.unwrap();
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/activity?since_id={}", first.id),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 410);
    assert_eq!(reply["error"], CURSOR_GONE);
}

async fn self_report_is_validated_stored_and_broadcast(db: TestStore) {
    let s = strict(db).await;
    let (id, token) = workspace(&s, "w").await;
    let (peer, _) = workspace(&s, "peer").await;
    let path = format!("/workspaces/{id}/activity");
    let post = async |body: Value| s.call("POST", &path, Some(&token), Some(body)).await;
    let mut events = s.state.events.subscribe();

    let (status, reply) = post(json!({
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
    assert_eq!((status, reply), (200, json!({"status": "logged"})));
    let e = next_event(&mut events, "ACTIVITY_LOGGED").await;
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
    let rows = s
        .state
        .store
        .activity()
        .list(id, &Default::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.source_id, Some(id), "source defaults to the workspace");
    assert_eq!(row.request_body, Some(json!({"trace": "abc"})));
    assert_eq!(row.error_detail, None, "empty strings are NULL");
    assert_eq!(row.status, "ok");

    // The same source id is accepted; memory_write is one of the seven.
    let (status, _) =
        post(json!({"activity_type": "memory_write", "source_id": id.to_string()})).await;
    assert_eq!(status, 200);
    let e = next_event(&mut events, "ACTIVITY_LOGGED").await;
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
    let (status, reply) = s.call_raw("POST", &path, Some(&token), "{not json").await;
    assert_eq!(
        (status, reply["error"].clone()),
        (400, json!("invalid request body"))
    );
    assert_eq!(
        s.state
            .store
            .activity()
            .list(id, &Default::default())
            .await
            .unwrap()
            .len(),
        2
    );

    // A workspace that does not exist (the admin token passes the guard): the insert fails
    // and the answer says so.
    let ghost = WorkspaceId::new();
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{ghost}/activity"),
            Some(ADMIN),
            Some(json!({"activity_type": "agent_log"})),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error"], "workspace not found");
}

async fn notify_broadcasts_and_persists(db: TestStore) {
    let s = strict(db).await;
    let (id, token) = workspace(&s, "Zoë's agent").await;
    let mut events = s.state.events.subscribe();
    // 79 ASCII bytes, then a two-byte character straddling the 80-byte cut.
    let message = format!("{}éand more", "m".repeat(79));
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/notify"),
            Some(&token),
            Some(json!({
                "message": message,
                "attachments": [
                    {"uri": "workspace:/out/report.pdf", "name": "report.pdf",
                     "mimeType": "application/pdf", "size": 1234},
                    {"uri": "workspace:/out/a.txt", "name": "a.txt", "mimeType": "", "size": 0},
                ],
            })),
        )
        .await;
    assert_eq!((status, reply), (200, json!({"status": "sent"})));
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
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/activity?type=a2a_receive&source=canvas"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
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
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/activity"),
            Some(&token),
            Some(json!({"activity_type": "agent_log", "summary": "after"})),
        )
        .await;
    assert_eq!(status, 200);
    let e = next_of(&mut events, &["AGENT_MESSAGE", "ACTIVITY_LOGGED"]).await;
    assert_eq!(e.event, "ACTIVITY_LOGGED");
    assert_eq!(
        e.payload["summary"], "after",
        "notify logged no ACTIVITY_LOGGED"
    );

    // Without attachments: no `attachments` key, no `parts`; a short message is not cut.
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/notify"),
            Some(&token),
            Some(json!({"message": "done", "attachments": []})),
        )
        .await;
    assert_eq!(status, 200);
    let e = next_event(&mut events, "AGENT_MESSAGE").await;
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
    let s = strict(db).await;
    let (id, token) = workspace(&s, "w").await;
    let path = format!("/workspaces/{id}/notify");
    let mut events = s.state.events.subscribe();
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
    let (status, reply) = s.call_raw("POST", &path, Some(&token), "nope").await;
    assert_eq!(
        (status, reply["error"].clone()),
        (400, json!("message is required"))
    );
    // None of them was broadcast: the first AGENT_MESSAGE is the valid one below.
    let (status, _) = s
        .call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"message": "valid"})),
        )
        .await;
    assert_eq!(status, 200);
    let e = next_event(&mut events, "AGENT_MESSAGE").await;
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
    s.state
        .store
        .workspaces()
        .transition(id, WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    let (status, reply) = s
        .call("POST", &path, Some(ADMIN), Some(json!({"message": "late"})))
        .await;
    assert_eq!(
        (status, reply),
        (404, json!({"error": "workspace not found"}))
    );
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{}/notify", WorkspaceId::new()),
            Some(ADMIN),
            Some(json!({"message": "nobody"})),
        )
        .await;
    assert_eq!(
        (status, reply),
        (404, json!({"error": "workspace not found"}))
    );
}

async fn session_search_finds_activity_rows(db: TestStore) {
    let s = strict(db).await;
    let (id, token) = workspace(&s, "w").await;
    let (other, _) = workspace(&s, "other").await;
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
        let (status, reply) = s
            .call(
                "GET",
                &format!("/workspaces/{id}/session-search?{query}"),
                Some(&token),
                None,
            )
            .await;
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

async fn routes_need_credentials_outside_dev_mode(db: TestStore) {
    let s = strict(db).await;
    let (id, token) = workspace(&s, "w").await;
    let (_, other_token) = workspace(&s, "other").await;
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
    let dev = TestServer::start(
        TestStore::of(backend).await,
        Options {
            backend: false,
            dev: true,
        },
    )
    .await;
    let (id, _) = workspace(&dev, "w").await;
    let (status, reply) = dev
        .call("GET", &format!("/workspaces/{id}/activity"), None, None)
        .await;
    assert_eq!((status, reply), (200, json!([])));
}
