//! The activity log: every field round-trips, idempotency keys, the list's filters and
//! cursor, the search, the delegation helpers and pruning.

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use molecule_store::{
    ActivityQuery, DelegationChange, NewActivity, SourceFilter, StoreError, on_both_backends,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::{at, workspace};

on_both_backends!(
    activity_round_trips_every_field,
    activity_idempotency_key_clash_is_duplicate,
    activity_list_applies_every_filter,
    activity_cursor_pages_rows_sharing_a_timestamp,
    activity_cursor_of_another_workspace_is_not_found,
    activity_search_matches_text_and_bodies,
    activity_delegation_helpers,
    activity_prune_deletes_only_older_rows,
);

async fn activity_round_trips_every_field(s: TestStore) {
    let ws = workspace(&s, "a", None).await;
    let peer = workspace(&s, "b", None).await;
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
    let ws = workspace(&s, "a", None).await;
    let other = workspace(&s, "b", None).await;
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
    let ws = workspace(&s, "a", None).await;
    let peer = workspace(&s, "peer", None).await;
    let third = workspace(&s, "third", None).await;
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
    let ws = workspace(&s, "a", None).await;
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
    let ws = workspace(&s, "a", None).await;
    let other = workspace(&s, "b", None).await;
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
    let ws = workspace(&s, "a", None).await;
    let other = workspace(&s, "b", None).await;
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
    let ws = workspace(&s, "src", None).await;
    let target = workspace(&s, "dst", None).await;
    let other = workspace(&s, "other", None).await;
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
    let ws = workspace(&s, "a", None).await;
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
