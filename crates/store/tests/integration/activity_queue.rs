//! Conformance of the activity log and the A2A queue: every test runs on SQLite and PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use molecule_store::{
    ActivityQuery, DelegationChange, NewActivity, NewQueueItem, NewWorkspace, PRIORITY_CRITICAL,
    PRIORITY_INFO, PRIORITY_TASK, QueueStatus, SourceFilter, StoreError, on_both_backends,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

on_both_backends!(
    activity_round_trips_every_field,
    activity_idempotency_key_clash_is_duplicate,
    activity_list_applies_every_filter,
    activity_cursor_pages_rows_sharing_a_timestamp,
    activity_cursor_of_another_workspace_is_not_found,
    activity_search_matches_text_and_bodies,
    activity_delegation_helpers,
    activity_prune_deletes_only_older_rows,
    queue_enqueue_is_idempotent_on_active_rows,
    queue_concurrent_dequeues_hand_each_row_out_once,
    queue_expired_rows_are_never_dequeued,
    queue_order_is_priority_then_age,
    queue_release_counts_attempts_and_fails_at_the_max,
    queue_requeue_and_complete,
    queue_drop_stale_appends_to_a_null_error,
    queue_reclaim_returns_orphaned_rows,
);

async fn workspace(s: &TestStore, name: &str) -> WorkspaceId {
    s.workspaces()
        .create(NewWorkspace::named(name))
        .await
        .unwrap()
        .id
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

async fn activity_round_trips_every_field(s: TestStore) {
    let ws = workspace(&s, "a").await;
    let peer = workspace(&s, "b").await;
    let mut new = NewActivity::new(ws, "a2a_receive");
    new.source_id = Some(peer);
    new.caller = Some("webhook:github".into());
    new.target_id = Some(ws);
    new.method = Some("message/send".into());
    new.summary = Some("message/send → Zoë".into());
    new.request_body = Some(json!({"params": {"text": "héllo"}}));
    new.response_body = Some(json!({"result": [1, 2]}));
    new.tool_trace = Some(json!([{"tool": "grep"}]));
    new.duration_ms = Some(1234);
    new.status = "error".into();
    new.error_detail = Some("boom".into());
    new.idempotency_key = Some("k1".into());
    let written = s.activity().record(&new).await.unwrap();
    let read = s.activity().get(ws, written.id).await.unwrap().unwrap();
    assert_eq!(read, written);
    assert_eq!(read.source_id, Some(peer));
    assert_eq!(read.caller.as_deref(), Some("webhook:github"));
    assert_eq!(read.request_body, new.request_body);
    assert_eq!(read.tool_trace, new.tool_trace);
    assert_eq!(read.duration_ms, Some(1234));
    assert_eq!(read.status, "error");
    // Scoped to its workspace.
    assert!(s.activity().get(peer, written.id).await.unwrap().is_none());

    // JSON null bodies and empty strings are stored as NULL; an empty status is `ok`.
    let mut bare = NewActivity::new(ws, "agent_log");
    bare.request_body = Some(Value::Null);
    bare.summary = Some(String::new());
    bare.idempotency_key = Some(String::new());
    bare.status = String::new();
    let written = s.activity().record(&bare).await.unwrap();
    let read = s.activity().get(ws, written.id).await.unwrap().unwrap();
    assert_eq!(read, written);
    assert_eq!(read.request_body, None);
    assert_eq!(read.summary, None);
    assert_eq!(read.idempotency_key, None);
    assert_eq!(read.status, "ok");
    // A huge duration is clamped, not an error.
    let mut long = NewActivity::new(ws, "agent_log");
    long.duration_ms = Some(i64::MAX);
    let row = s.activity().record(&long).await.unwrap();
    assert_eq!(row.duration_ms, Some(i64::from(i32::MAX)));
}

async fn activity_idempotency_key_clash_is_duplicate(s: TestStore) {
    let ws = workspace(&s, "a").await;
    let other = workspace(&s, "b").await;
    let mut new = NewActivity::new(ws, "delegation");
    new.idempotency_key = Some("same".into());
    s.activity().record(&new).await.unwrap();
    let err = s.activity().record(&new).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate), "{err}");
    // Another workspace may use the key; rows without a key never clash.
    new.workspace_id = other;
    s.activity().record(&new).await.unwrap();
    let keyless = NewActivity::new(ws, "delegation");
    s.activity().record(&keyless).await.unwrap();
    s.activity().record(&keyless).await.unwrap();
    // A workspace that does not exist.
    let err = s
        .activity()
        .record(&NewActivity::new(WorkspaceId::new(), "agent_log"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
}

async fn activity_list_applies_every_filter(s: TestStore) {
    let ws = workspace(&s, "a").await;
    let peer = workspace(&s, "peer").await;
    let third = workspace(&s, "third").await;
    let a = s.activity();
    let mut canvas = NewActivity::new(ws, "a2a_receive");
    canvas.method = Some("message/send".into());
    let canvas = a.record_at(&canvas, at(10)).await.unwrap();
    let mut from_peer = NewActivity::new(ws, "a2a_receive");
    from_peer.source_id = Some(peer);
    from_peer.method = Some("notify".into());
    let from_peer = a.record_at(&from_peer, at(20)).await.unwrap();
    let mut to_third = NewActivity::new(ws, "a2a_send");
    to_third.source_id = Some(ws);
    to_third.target_id = Some(third);
    let to_third = a.record_at(&to_third, at(30)).await.unwrap();
    let mut to_peer = NewActivity::new(ws, "delegation");
    to_peer.source_id = Some(ws);
    to_peer.target_id = Some(peer);
    let to_peer = a.record_at(&to_peer, at(40)).await.unwrap();
    // Another workspace's row never shows.
    a.record_at(&NewActivity::new(peer, "a2a_receive"), at(15))
        .await
        .unwrap();

    let list = async |q: ActivityQuery| -> Vec<Uuid> {
        a.list(ws, &q)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let none = ActivityQuery::default;
    assert_eq!(
        list(none()).await,
        vec![to_peer.id, to_third.id, from_peer.id, canvas.id],
        "newest first"
    );
    let of_type = ActivityQuery {
        activity_type: Some("a2a_receive".into()),
        ..none()
    };
    assert_eq!(list(of_type).await, vec![from_peer.id, canvas.id]);
    let canvas_only = ActivityQuery {
        source: Some(SourceFilter::Canvas),
        ..none()
    };
    assert_eq!(list(canvas_only).await, vec![canvas.id]);
    let agents = ActivityQuery {
        source: Some(SourceFilter::Agent),
        ..none()
    };
    assert_eq!(
        list(agents).await,
        vec![to_peer.id, to_third.id, from_peer.id]
    );
    let by_peer = ActivityQuery {
        peer: Some(peer),
        ..none()
    };
    assert_eq!(list(by_peer).await, vec![to_peer.id, from_peer.id]);
    let before = ActivityQuery {
        before: Some(at(30)),
        ..none()
    };
    assert_eq!(
        list(before).await,
        vec![from_peer.id, canvas.id],
        "strictly before"
    );
    let since = ActivityQuery {
        since: Some(at(30)),
        ..none()
    };
    assert_eq!(
        list(since).await,
        vec![to_peer.id, to_third.id],
        "at or after"
    );
    let method = ActivityQuery {
        method: Some("notify".into()),
        ..none()
    };
    assert_eq!(list(method).await, vec![from_peer.id]);
    let two = ActivityQuery { limit: 2, ..none() };
    assert_eq!(list(two).await, vec![to_peer.id, to_third.id]);
    let negative = ActivityQuery {
        limit: -5,
        ..none()
    };
    assert!(list(negative).await.is_empty());
    // Everything together.
    let all = ActivityQuery {
        activity_type: Some("a2a_receive".into()),
        source: Some(SourceFilter::Agent),
        peer: Some(peer),
        before: Some(at(100)),
        since: Some(at(0)),
        after: Some(canvas.id),
        method: Some("notify".into()),
        limit: 10,
    };
    assert_eq!(list(all).await, vec![from_peer.id]);
}

async fn activity_cursor_pages_rows_sharing_a_timestamp(s: TestStore) {
    let ws = workspace(&s, "a").await;
    let a = s.activity();
    let mut written = Vec::new();
    written.push(
        a.record_at(&NewActivity::new(ws, "a2a_receive"), at(0))
            .await
            .unwrap(),
    );
    for _ in 0..7 {
        written.push(
            a.record_at(&NewActivity::new(ws, "a2a_receive"), at(5))
                .await
                .unwrap(),
        );
    }
    written.push(
        a.record_at(&NewActivity::new(ws, "a2a_receive"), at(9))
            .await
            .unwrap(),
    );
    let mut keyset: Vec<(OffsetDateTime, Uuid)> =
        written.iter().map(|r| (r.created_at, r.id)).collect();
    keyset.sort();

    // Newest first without a cursor, ties broken by id.
    let newest: Vec<Uuid> = a
        .list(ws, &ActivityQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let expected: Vec<Uuid> = keyset.iter().rev().map(|k| k.1).collect();
    assert_eq!(newest, expected);

    // Start from each of the tied rows: pages of two see exactly the rows after it.
    for start in 1..keyset.len() - 1 {
        let mut cursor = keyset[start].1;
        let mut seen = Vec::new();
        loop {
            let q = ActivityQuery {
                after: Some(cursor),
                limit: 2,
                ..ActivityQuery::default()
            };
            let page = a.list(ws, &q).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            cursor = page.last().unwrap().id;
            seen.extend(page.into_iter().map(|r| r.id));
        }
        let rest: Vec<Uuid> = keyset[start + 1..].iter().map(|k| k.1).collect();
        assert_eq!(
            seen, rest,
            "paging from row {start} skipped or repeated rows"
        );
    }
}

async fn activity_cursor_of_another_workspace_is_not_found(s: TestStore) {
    let ws = workspace(&s, "a").await;
    let other = workspace(&s, "b").await;
    let foreign = s
        .activity()
        .record(&NewActivity::new(other, "a2a_receive"))
        .await
        .unwrap();
    for cursor in [foreign.id, Uuid::new_v4()] {
        let q = ActivityQuery {
            after: Some(cursor),
            ..ActivityQuery::default()
        };
        let err = s.activity().list(ws, &q).await.unwrap_err();
        assert!(matches!(err, StoreError::CursorNotFound), "{err}");
    }
    // A pruned cursor is the same.
    let own = s
        .activity()
        .record_at(&NewActivity::new(ws, "a2a_receive"), at(0))
        .await
        .unwrap();
    s.activity().prune_older_than(at(1)).await.unwrap();
    let q = ActivityQuery {
        after: Some(own.id),
        ..ActivityQuery::default()
    };
    let err = s.activity().list(ws, &q).await.unwrap_err();
    assert!(matches!(err, StoreError::CursorNotFound), "{err}");
}

async fn activity_search_matches_text_and_bodies(s: TestStore) {
    let ws = workspace(&s, "a").await;
    let other = workspace(&s, "b").await;
    let a = s.activity();
    let mut summary = NewActivity::new(ws, "a2a_receive");
    summary.summary = Some("Deploy the ROCKET".into());
    let summary = a.record_at(&summary, at(1)).await.unwrap();
    let mut request = NewActivity::new(ws, "a2a_send");
    request.request_body = Some(json!({"task": "refuel the rocket"}));
    let request = a.record_at(&request, at(2)).await.unwrap();
    let mut response = NewActivity::new(ws, "task_update");
    response.response_body = Some(json!({"text": "100% done"}));
    response.method = Some("tasks/get".into());
    let response = a.record_at(&response, at(3)).await.unwrap();
    let mut foreign = NewActivity::new(other, "a2a_receive");
    foreign.summary = Some("rocket".into());
    a.record_at(&foreign, at(4)).await.unwrap();

    let ids = async |q: Option<&str>, limit: i64| -> Vec<Uuid> {
        a.search(ws, q, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(Some("rocket"), 50).await, vec![request.id, summary.id]);
    assert_eq!(ids(Some("TASKS/"), 50).await, vec![response.id]);
    assert_eq!(ids(Some("task_update"), 50).await, vec![response.id]);
    // `%` and `_` are literal.
    assert_eq!(ids(Some("100%"), 50).await, vec![response.id]);
    assert!(ids(Some("1_0"), 50).await.is_empty());
    assert!(ids(Some("%x%"), 50).await.is_empty());
    assert_eq!(
        ids(None, 50).await,
        vec![response.id, request.id, summary.id]
    );
    assert_eq!(ids(Some(""), 2).await, vec![response.id, request.id]);
}

async fn activity_delegation_helpers(s: TestStore) {
    let ws = workspace(&s, "src").await;
    let target = workspace(&s, "dst").await;
    let other = workspace(&s, "other").await;
    let a = s.activity();
    let mut request = NewActivity::new(ws, "delegation");
    request.method = Some("delegate".into());
    request.source_id = Some(ws);
    request.target_id = Some(target);
    request.summary = Some(format!("Delegating to {target}"));
    request.request_body = Some(json!({"task": "t", "delegation_id": "d-1"}));
    request.status = "pending".into();
    request.idempotency_key = Some("key-1".into());
    let request = a.record_at(&request, at(1)).await.unwrap();
    let mut result = NewActivity::new(ws, "delegation");
    result.method = Some("delegate_result".into());
    result.response_body = Some(json!({"delegation_id": "d-1", "queued": true}));
    result.status = "queued".into();
    let result = a.record_at(&result, at(2)).await.unwrap();
    a.record_at(&NewActivity::new(ws, "a2a_receive"), at(3))
        .await
        .unwrap();
    let mut foreign = NewActivity::new(other, "delegation");
    foreign.method = Some("delegate_result".into());
    foreign.response_body = Some(json!({"delegation_id": "d-1"}));
    foreign.status = "queued".into();
    let foreign = a.record_at(&foreign, at(4)).await.unwrap();

    // Lookup by key.
    assert_eq!(
        a.by_idempotency_key(ws, "key-1").await.unwrap(),
        Some(request.clone())
    );
    assert_eq!(a.by_idempotency_key(other, "key-1").await.unwrap(), None);
    // Delegation rows: newest first, delegation methods only.
    let rows = a.delegation_rows(ws, 50).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![result.id, request.id]
    );
    assert_eq!(a.delegation_rows(ws, 1).await.unwrap().len(), 1);

    // The request row, found by its request body; None leaves columns.
    let n = a
        .update_delegation(
            ws,
            "d-1",
            "delegate",
            &DelegationChange {
                status: "dispatched".into(),
                summary: None,
                response_body: None,
                error_detail: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = a.get(ws, request.id).await.unwrap().unwrap();
    assert_eq!(row.status, "dispatched");
    assert_eq!(row.summary, request.summary);
    assert_eq!(row.request_body, request.request_body);
    // The result row, found by its response body.
    let n = a
        .update_delegation(
            ws,
            "d-1",
            "delegate_result",
            &DelegationChange {
                status: "completed".into(),
                summary: Some("Delegation completed (ok)".into()),
                response_body: Some(json!({"text": "ok", "delegation_id": "d-1"})),
                error_detail: Some("none".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = a.get(ws, result.id).await.unwrap().unwrap();
    assert_eq!(row.status, "completed");
    assert_eq!(row.summary.as_deref(), Some("Delegation completed (ok)"));
    assert_eq!(
        row.response_body,
        Some(json!({"text": "ok", "delegation_id": "d-1"}))
    );
    assert_eq!(row.error_detail.as_deref(), Some("none"));
    // Another workspace's row with the same delegation id is untouched.
    assert_eq!(
        a.get(other, foreign.id).await.unwrap().unwrap().status,
        "queued"
    );
    let change = DelegationChange {
        status: "failed".into(),
        summary: None,
        response_body: None,
        error_detail: None,
    };
    assert_eq!(
        a.update_delegation(ws, "d-unknown", "delegate", &change)
            .await
            .unwrap(),
        0
    );

    // Only failed rows are deleted by key.
    assert_eq!(a.delete_failed_with_key(ws, "key-1").await.unwrap(), 0);
    a.update_delegation(ws, "d-1", "delegate", &change)
        .await
        .unwrap();
    assert_eq!(a.delete_failed_with_key(other, "key-1").await.unwrap(), 0);
    assert_eq!(a.delete_failed_with_key(ws, "key-1").await.unwrap(), 1);
    assert!(a.by_idempotency_key(ws, "key-1").await.unwrap().is_none());
    assert!(a.get(ws, request.id).await.unwrap().is_none());
}

async fn activity_prune_deletes_only_older_rows(s: TestStore) {
    let ws = workspace(&s, "a").await;
    let a = s.activity();
    let old = a
        .record_at(&NewActivity::new(ws, "agent_log"), at(0))
        .await
        .unwrap();
    let edge = a
        .record_at(&NewActivity::new(ws, "agent_log"), at(10))
        .await
        .unwrap();
    let new = a
        .record_at(&NewActivity::new(ws, "agent_log"), at(20))
        .await
        .unwrap();
    assert_eq!(a.prune_older_than(at(10)).await.unwrap(), 1);
    assert!(a.get(ws, old.id).await.unwrap().is_none());
    assert!(a.get(ws, edge.id).await.unwrap().is_some());
    assert!(a.get(ws, new.id).await.unwrap().is_some());
}

fn item(ws: WorkspaceId, key: Option<&str>) -> NewQueueItem {
    NewQueueItem {
        workspace_id: ws,
        caller_id: None,
        caller: None,
        priority: PRIORITY_TASK,
        body: json!({"jsonrpc": "2.0", "method": "message/send", "params": {"k": key}}),
        method: Some("message/send".into()),
        idempotency_key: key.map(str::to_owned),
        expires_at: None,
    }
}

async fn queue_enqueue_is_idempotent_on_active_rows(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let other = workspace(&s, "other").await;
    let caller = workspace(&s, "caller").await;
    let q = s.queue();
    let mut first = item(ws, Some("msg-1"));
    first.caller_id = Some(caller);
    first.caller = Some("system:restart-context".into());
    let a = q.enqueue(&first).await.unwrap();
    assert!(!a.existing);
    assert_eq!(a.depth, 1);
    let stored = q.get(a.id).await.unwrap().unwrap();
    assert_eq!(stored.workspace_id, ws);
    assert_eq!(stored.caller_id, Some(caller));
    assert_eq!(stored.caller.as_deref(), Some("system:restart-context"));
    assert_eq!(stored.priority, PRIORITY_TASK);
    assert_eq!(stored.body, first.body);
    assert_eq!(stored.method.as_deref(), Some("message/send"));
    assert_eq!(stored.status, QueueStatus::Queued);
    assert_eq!(stored.attempts, 0);
    assert_eq!(stored.dispatched_at, None);
    assert_eq!(stored.last_error, None);

    let again = q.enqueue(&item(ws, Some("msg-1"))).await.unwrap();
    assert_eq!(again.id, a.id);
    assert!(again.existing);
    assert_eq!(again.depth, 1);
    // Still the same row while it is dispatched.
    q.dequeue(ws).await.unwrap().unwrap();
    let during = q.enqueue(&item(ws, Some("msg-1"))).await.unwrap();
    assert_eq!((during.id, during.existing, during.depth), (a.id, true, 0));
    // The same key on another workspace, and keyless items, are new rows.
    let elsewhere = q.enqueue(&item(other, Some("msg-1"))).await.unwrap();
    assert_ne!(elsewhere.id, a.id);
    assert!(!elsewhere.existing);
    let k1 = q.enqueue(&item(ws, None)).await.unwrap();
    let k2 = q.enqueue(&item(ws, Some(""))).await.unwrap();
    assert_ne!(k1.id, k2.id);
    assert_eq!(q.get(k2.id).await.unwrap().unwrap().idempotency_key, None);
    assert_eq!(k2.depth, 2);
    // Once the holder is finished, the key may be queued again.
    assert!(q.complete(a.id, None).await.unwrap());
    let after = q.enqueue(&item(ws, Some("msg-1"))).await.unwrap();
    assert_ne!(after.id, a.id);
    assert!(!after.existing);
}

async fn queue_concurrent_dequeues_hand_each_row_out_once(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let mut queued = HashSet::new();
    for i in 0..12 {
        let key = format!("m{i}");
        queued.insert(s.queue().enqueue(&item(ws, Some(&key))).await.unwrap().id);
    }
    let store = (*s).clone();
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut got = Vec::new();
            while let Some(item) = store.queue().dequeue(ws).await.unwrap() {
                got.push(item.id);
            }
            got
        }));
    }
    let mut handed = Vec::new();
    for t in tasks {
        handed.extend(t.await.unwrap());
    }
    let unique: HashSet<Uuid> = handed.iter().copied().collect();
    assert_eq!(unique.len(), handed.len(), "a row was handed out twice");
    assert_eq!(unique, queued);
    for id in unique {
        let row = s.queue().get(id).await.unwrap().unwrap();
        assert_eq!(row.status, QueueStatus::Dispatched);
        assert_eq!(row.attempts, 1);
        assert!(row.dispatched_at.is_some());
    }
    assert_eq!(s.queue().depth(ws).await.unwrap(), 0);
}

async fn queue_expired_rows_are_never_dequeued(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let idle = workspace(&s, "idle").await;
    let q = s.queue();
    let mut expired = item(ws, Some("old"));
    expired.expires_at = Some(OffsetDateTime::now_utc() - time::Duration::seconds(1));
    let expired = q.enqueue(&expired).await.unwrap();
    assert_eq!(expired.depth, 0, "an expired row is not deliverable");
    let mut expired_idle = item(idle, None);
    expired_idle.expires_at = Some(OffsetDateTime::now_utc() - time::Duration::seconds(1));
    q.enqueue(&expired_idle).await.unwrap();
    assert!(q.dequeue(ws).await.unwrap().is_none());
    assert!(q.with_queued().await.unwrap().is_empty());

    let mut live = item(ws, Some("new"));
    live.expires_at = Some(OffsetDateTime::now_utc() + time::Duration::hours(1));
    let live = q.enqueue(&live).await.unwrap();
    assert_eq!(live.depth, 1);
    assert_eq!(q.with_queued().await.unwrap(), vec![ws]);
    assert_eq!(q.dequeue(ws).await.unwrap().unwrap().id, live.id);
    assert!(q.dequeue(ws).await.unwrap().is_none());

    // The sweep drops the expired rows only.
    assert_eq!(q.expire().await.unwrap(), 2);
    let row = q.get(expired.id).await.unwrap().unwrap();
    assert_eq!(row.status, QueueStatus::Dropped);
    assert_eq!(row.last_error.as_deref(), Some("expired"));
    assert_eq!(
        q.get(live.id).await.unwrap().unwrap().status,
        QueueStatus::Dispatched
    );
    assert_eq!(q.expire().await.unwrap(), 0);
}

async fn queue_order_is_priority_then_age(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let other = workspace(&s, "other").await;
    let q = s.queue();
    let mut ids = Vec::new();
    for (key, priority) in [
        ("task-1", PRIORITY_TASK),
        ("info-1", PRIORITY_INFO),
        ("crit-1", PRIORITY_CRITICAL),
        ("task-2", PRIORITY_TASK),
        ("crit-2", PRIORITY_CRITICAL),
    ] {
        let mut new = item(ws, Some(key));
        new.priority = priority;
        ids.push((key, q.enqueue(&new).await.unwrap().id));
    }
    q.enqueue(&item(other, Some("x"))).await.unwrap();
    let id = |k: &str| ids.iter().find(|(key, _)| *key == k).unwrap().1;
    let mut order = Vec::new();
    while let Some(row) = q.dequeue(ws).await.unwrap() {
        assert_eq!(row.workspace_id, ws);
        order.push(row.id);
    }
    assert_eq!(
        order,
        vec![
            id("crit-1"),
            id("crit-2"),
            id("task-1"),
            id("task-2"),
            id("info-1")
        ]
    );
    let mut with = q.with_queued().await.unwrap();
    with.sort();
    assert_eq!(with, vec![other]);
}

async fn queue_release_counts_attempts_and_fails_at_the_max(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let q = s.queue();
    let id = q.enqueue(&item(ws, Some("m"))).await.unwrap().id;
    // Releasing a row that is not dispatched changes nothing.
    assert_eq!(q.release(id, "nope", 3).await.unwrap(), QueueStatus::Queued);
    assert_eq!(q.get(id).await.unwrap().unwrap().last_error, None);
    for attempt in 1..=3 {
        let row = q.dequeue(ws).await.unwrap().unwrap();
        assert_eq!(row.id, id);
        assert_eq!(row.attempts, attempt);
        let status = q.release(id, &format!("error {attempt}"), 3).await.unwrap();
        let row = q.get(id).await.unwrap().unwrap();
        assert_eq!(row.dispatched_at, None);
        assert_eq!(
            row.last_error.as_deref(),
            Some(format!("error {attempt}").as_str())
        );
        if attempt < 3 {
            assert_eq!(status, QueueStatus::Queued);
        } else {
            assert_eq!(status, QueueStatus::Failed);
            assert_eq!(row.status, QueueStatus::Failed);
        }
    }
    assert!(q.dequeue(ws).await.unwrap().is_none());
    // A failed row frees its key.
    assert!(!q.enqueue(&item(ws, Some("m"))).await.unwrap().existing);
    let err = q.release(Uuid::new_v4(), "x", 3).await.unwrap_err();
    assert!(matches!(err, StoreError::QueueItemNotFound), "{err}");
}

async fn queue_requeue_and_complete(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let q = s.queue();
    let id = q.enqueue(&item(ws, Some("m"))).await.unwrap().id;
    assert!(!q.requeue(id).await.unwrap(), "only a dispatched row");
    assert!(
        !q.complete(id, None).await.unwrap(),
        "only a dispatched row"
    );
    // Busy again: back in the queue, the attempt not counted.
    q.dequeue(ws).await.unwrap().unwrap();
    assert!(q.requeue(id).await.unwrap());
    let row = q.get(id).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.dispatched_at),
        (QueueStatus::Queued, 0, None)
    );
    assert_eq!(q.depth(ws).await.unwrap(), 1);
    // Delivered: the answer is kept.
    let row = q.dequeue(ws).await.unwrap().unwrap();
    assert_eq!(row.attempts, 1);
    let answer = json!({"result": {"parts": [{"kind": "text", "text": "done"}]}});
    assert!(q.complete(id, Some(&answer)).await.unwrap());
    let row = q.get(id).await.unwrap().unwrap();
    assert_eq!(row.status, QueueStatus::Completed);
    assert!(row.completed_at.is_some());
    assert_eq!(row.response_body, Some(answer));
    assert!(!q.complete(id, None).await.unwrap(), "completed once");
    assert!(!q.requeue(id).await.unwrap());
    assert!(q.get(Uuid::new_v4()).await.unwrap().is_none());
}

async fn queue_drop_stale_appends_to_a_null_error(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let other = workspace(&s, "other").await;
    let q = s.queue();
    let errored = q.enqueue(&item(ws, Some("a"))).await.unwrap().id;
    let clean = q.enqueue(&item(ws, Some("b"))).await.unwrap().id;
    let elsewhere = q.enqueue(&item(other, Some("c"))).await.unwrap().id;
    // Give the older row an error and put it back in the queue.
    assert_eq!(q.dequeue(ws).await.unwrap().unwrap().id, errored);
    q.release(errored, "agent busy", 5).await.unwrap();

    // Nothing is that old yet.
    assert_eq!(
        q.drop_stale(Duration::from_secs(3600), None).await.unwrap(),
        0
    );
    // Every queued row of one workspace.
    assert_eq!(q.drop_stale(Duration::ZERO, Some(ws)).await.unwrap(), 2);
    let a = q.get(errored).await.unwrap().unwrap();
    assert_eq!(a.status, QueueStatus::Dropped);
    let note = "dropped: stale after 0 minutes in the queue";
    assert_eq!(
        a.last_error.as_deref(),
        Some(format!("agent busy; {note}").as_str())
    );
    let b = q.get(clean).await.unwrap().unwrap();
    assert_eq!(b.status, QueueStatus::Dropped);
    assert_eq!(
        b.last_error.as_deref(),
        Some(note),
        "NULL || note is the note"
    );
    assert_eq!(
        q.get(elsewhere).await.unwrap().unwrap().status,
        QueueStatus::Queued
    );
    // Every workspace; dispatched rows are not touched.
    let d = q.enqueue(&item(other, Some("d"))).await.unwrap().id;
    let taken = q.dequeue(other).await.unwrap().unwrap().id;
    assert_eq!(q.drop_stale(Duration::ZERO, None).await.unwrap(), 1);
    assert_eq!(
        q.get(taken).await.unwrap().unwrap().status,
        QueueStatus::Dispatched
    );
    assert!(taken == elsewhere || taken == d);
}

async fn queue_reclaim_returns_orphaned_rows(s: TestStore) {
    let ws = workspace(&s, "target").await;
    let q = s.queue();
    let id = q.enqueue(&item(ws, Some("m"))).await.unwrap().id;
    let waiting = q.enqueue(&item(ws, Some("n"))).await.unwrap().id;
    let row = q.dequeue(ws).await.unwrap().unwrap();
    assert_eq!(row.id, id);
    // Handed out after the cutoff: still in flight.
    assert_eq!(
        q.reclaim(OffsetDateTime::now_utc() - time::Duration::minutes(5))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        q.reclaim(OffsetDateTime::now_utc() + time::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    let row = q.get(id).await.unwrap().unwrap();
    assert_eq!(row.status, QueueStatus::Queued);
    assert_eq!(row.dispatched_at, None);
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.unwrap().contains("reclaimed"));
    assert_eq!(
        q.get(waiting).await.unwrap().unwrap().status,
        QueueStatus::Queued
    );
    // It is delivered again, first (it is older).
    assert_eq!(q.dequeue(ws).await.unwrap().unwrap().id, id);
}
