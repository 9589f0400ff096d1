//! The A2A queue: idempotent enqueues, each row handed out once under concurrency, expiry,
//! priority order, attempts and release, requeue and completion, stale drops and reclaim.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use molecule_store::{
    NewQueueItem, PRIORITY_CRITICAL, PRIORITY_INFO, PRIORITY_TASK, QueueStatus, StoreError,
    on_both_backends,
};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::workspace;

on_both_backends!(
    queue_enqueue_is_idempotent_on_active_rows,
    queue_concurrent_dequeues_hand_each_row_out_once,
    queue_expired_rows_are_never_dequeued,
    queue_order_is_priority_then_age,
    queue_release_counts_attempts_and_fails_at_the_max,
    queue_requeue_and_complete,
    queue_drop_stale_appends_to_a_null_error,
    queue_reclaim_returns_orphaned_rows,
);

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
    let ws = workspace(&s, "target", None).await;
    let other = workspace(&s, "other", None).await;
    let caller = workspace(&s, "caller", None).await;
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
    let ws = workspace(&s, "target", None).await;
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
    let ws = workspace(&s, "target", None).await;
    let idle = workspace(&s, "idle", None).await;
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
    let ws = workspace(&s, "target", None).await;
    let other = workspace(&s, "other", None).await;
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
    let ws = workspace(&s, "target", None).await;
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
    let ws = workspace(&s, "target", None).await;
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
    let ws = workspace(&s, "target", None).await;
    let other = workspace(&s, "other", None).await;
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
    let ws = workspace(&s, "target", None).await;
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
