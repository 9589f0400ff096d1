//! The hot paths' registry cache and group-commit writer: the cache serves what it holds,
//! another replica's change reaches it through `LISTEN/NOTIFY` (not through expiry: the
//! replica here keeps entries for an hour), SQLite readers never wait behind the writer, and
//! activity rows queued for the writer are seen by the next read.

use std::sync::Arc;
use std::time::Duration;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_store::testing::TestStore;
use molecule_store::{
    ActivityQuery, NewActivity, NewQueueItem, PRIORITY_TASK, Store, StoreSettings, on_both_backends,
};
use parking_lot::Mutex;
use sqlx::Connection;

use crate::common::named;

/// How long a replica may take to hear a change (far below the replica's one-hour TTL).
const HEARD_WITHIN: Duration = Duration::from_secs(10);

/// Polls `check` until it holds, failing after [`HEARD_WITHIN`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + HEARD_WITHIN;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {HEARD_WITHIN:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second replica of `a` whose cache entries never expire during a test.
async fn long_lived_replica(a: &TestStore) -> TestStore {
    let b = a
        .replica(StoreSettings {
            cache_ttl: Duration::from_secs(3600),
            ..StoreSettings::default()
        })
        .await;
    until("both caches listen", || async {
        a.cache_trusted() && b.cache_trusted()
    })
    .await;
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_replica_is_refused_by_the_other() {
    let a = TestStore::postgres().await;
    let b = long_lived_replica(&a).await;
    let ws = named(&a, "agent").await;
    let issued = a.tokens().issue(ws.id).await.unwrap();
    assert!(b.tokens().validate(ws.id, &issued.token).await.unwrap());

    // Behind the cache's back (no trigger fires for this column), the row stops matching:
    // the replica that holds the token still answers from memory, the other reads the row.
    let mut raw = sqlx::PgConnection::connect(a.url()).await.unwrap();
    sqlx::query("UPDATE workspace_auth_tokens SET token_hash = '\\x00' WHERE workspace_id = $1")
        .bind(ws.id.to_string().parse::<uuid::Uuid>().unwrap())
        .execute(&mut raw)
        .await
        .unwrap();
    assert!(
        b.tokens().validate(ws.id, &issued.token).await.unwrap(),
        "the replica's cache serves the token it holds"
    );
    assert!(!a.tokens().validate(ws.id, &issued.token).await.unwrap());

    // A revocation on `a` reaches `b` through the trigger's notification.
    a.tokens().revoke_all(ws.id).await.unwrap();
    until(
        "the revoked token is refused by the other replica",
        || async { !b.tokens().validate(ws.id, &issued.token).await.unwrap() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_removed_or_queued_for_on_one_replica_is_seen_by_the_other() {
    let a = TestStore::postgres().await;
    let b = long_lived_replica(&a).await;
    let ws = named(&a, "target").await;
    let routed = b.workspaces().routing(ws.id).await.unwrap().unwrap();
    assert_eq!(routed.workspace.status, WorkspaceStatus::Provisioning);
    assert!(!b.queue().may_have_waiting(ws.id).await.unwrap());

    a.queue().enqueue(&queued_for(ws.id)).await.unwrap();
    until("the other replica knows a message waits", || async {
        b.queue().may_have_waiting(ws.id).await.unwrap()
    })
    .await;

    a.workspaces().remove_all(&[ws.id]).await.unwrap();
    until("the other replica sees the removal", || async {
        b.workspaces()
            .routing(ws.id)
            .await
            .unwrap()
            .is_some_and(|r| r.workspace.status.is_removed())
    })
    .await;
}

fn queued_for(workspace_id: WorkspaceId) -> NewQueueItem {
    NewQueueItem {
        workspace_id,
        caller_id: None,
        caller: Some("system:test".into()),
        priority: PRIORITY_TASK,
        body: serde_json::json!({"method": "message/send"}),
        method: Some("message/send".into()),
        idempotency_key: None,
        expires_at: None,
    }
}

on_both_backends!(
    writes_in_this_process_reach_the_cache_at_once,
    rows_queued_for_the_writer_are_read_back_and_hooked,
);

async fn writes_in_this_process_reach_the_cache_at_once(s: TestStore) {
    let parent = named(&s, "parent").await;
    let child = named(&s, "child").await;
    assert!(
        s.workspaces()
            .can_communicate(parent.id, child.id)
            .await
            .unwrap()
    );
    let issued = s.tokens().issue(child.id).await.unwrap();
    assert!(s.tokens().validate(child.id, &issued.token).await.unwrap());
    assert_eq!(
        s.workspaces()
            .routing(child.id)
            .await
            .unwrap()
            .unwrap()
            .workspace
            .url,
        None
    );

    s.workspaces()
        .set_url(child.id, Some("http://agent.test:1"))
        .await
        .unwrap();
    let update = molecule_store::WorkspaceUpdate {
        parent_id: Some(Some(parent.id)),
        ..Default::default()
    };
    s.workspaces().update(child.id, update).await.unwrap();
    let routed = s.workspaces().routing(child.id).await.unwrap().unwrap();
    assert_eq!(routed.workspace.url.as_deref(), Some("http://agent.test:1"));
    assert_eq!(routed.workspace.parent_id, Some(parent.id));

    s.tokens().revoke_all(child.id).await.unwrap();
    assert!(!s.tokens().validate(child.id, &issued.token).await.unwrap());
    s.workspaces().remove_all(&[child.id]).await.unwrap();
    let routed = s.workspaces().routing(child.id).await.unwrap().unwrap();
    assert!(routed.workspace.status.is_removed());
}

async fn rows_queued_for_the_writer_are_read_back_and_hooked(s: TestStore) {
    let ws = named(&s, "busy").await;
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&hooked);
    s.on_activity_stored(Arc::new(move |row| seen.lock().push(row.id)));
    let mut ids = Vec::new();
    for i in 0..300 {
        let mut new = NewActivity::new(ws.id, "a2a_receive");
        new.summary = Some(format!("message {i}"));
        ids.push(s.activity().record_later(new).await);
    }
    let query = ActivityQuery {
        limit: 1000,
        ..ActivityQuery::default()
    };
    let listed = s.activity().list(ws.id, &query).await.unwrap();
    assert_eq!(listed.len(), 300, "every queued row is read back");
    let mut hooked = hooked.lock().clone();
    hooked.sort();
    ids.sort();
    assert_eq!(hooked, ids, "the hook saw each committed row once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_do_not_wait_behind_a_write() {
    let s = TestStore::sqlite().await;
    let ws = named(&s, "reader").await;
    // Another connection takes SQLite's write lock and keeps it: the store's next write
    // waits for it on the writer connection.
    let mut holder = sqlx::SqliteConnection::connect(s.url()).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let writer: Store = (*s).clone();
    let blocked = tokio::spawn(async move { writer.workspaces().set_url(ws.id, None).await });
    tokio::task::yield_now().await;
    // Reads go to the readers and answer while the writer waits.
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        s.workspaces().get(ws.id).await
    })
    .await
    .expect("a read waited behind the writer")
    .unwrap();
    assert_eq!(read.map(|w| w.id), Some(ws.id));
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    blocked.await.unwrap().unwrap();
}

/// A heartbeat the group-commit writer has taken for its flush but not yet committed is
/// still what the hot path reads: a row lock held by another connection stops the flush
/// half-way (its `UPDATE` waits, seen in `pg_stat_activity`), and a read of the row, which
/// the lock does not block, must not show the workspace as it was before the heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_being_flushed_is_not_lost_to_a_read() {
    let a = TestStore::postgres().await;
    let no_cache = a
        .replica(StoreSettings {
            cache_ttl: Duration::ZERO,
            ..StoreSettings::default()
        })
        .await;
    let ws = named(&a, "busy").await;
    let mut lock = sqlx::PgConnection::connect(a.url()).await.unwrap();
    let mut held = lock.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE")
        .bind(ws.id.to_string().parse::<uuid::Uuid>().unwrap())
        .execute(&mut *held)
        .await
        .unwrap();

    let beat = molecule_store::Heartbeat {
        active_tasks: 3,
        ..molecule_store::Heartbeat::default()
    };
    let workspaces = no_cache.workspaces();
    workspaces
        .record_heartbeat(ws.id, &beat)
        .await
        .unwrap()
        .unwrap();
    until("the flush waits on the row lock", || async {
        a.query_i64(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE 'UPDATE workspaces SET last_heartbeat_at%'",
        )
        .await
            == 1
    })
    .await;
    let read = workspaces.routing(ws.id).await.unwrap().unwrap();
    assert_eq!(
        read.workspace.active_tasks, 3,
        "the heartbeat being written"
    );

    held.rollback().await.unwrap();
    let stored = no_cache.workspaces().get(ws.id).await.unwrap().unwrap();
    assert_eq!(stored.active_tasks, 3);
    let read = workspaces.routing(ws.id).await.unwrap().unwrap();
    assert_eq!(read.workspace.active_tasks, 3, "the heartbeat written");
}
