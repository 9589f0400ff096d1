//! Server replicas on one PostgreSQL share their events (each exactly once); on SQLite there is
//! no replica listener.

use molecule_domain::EventType;
use molecule_server::AppState;
use molecule_server::Security;
use molecule_store::testing::TestStore;
use molecule_store::{DatabaseUrl, Store};
use serde_json::json;

use super::{BOUND, strict, workspace};

/// Two servers with their own connection pools on one PostgreSQL database: an event emitted
/// on one reaches the WebSocket clients of the other, exactly once on each.
#[tokio::test]
async fn two_replicas_share_their_events() {
    let db = TestStore::postgres().await;
    let url = DatabaseUrl::parse(db.url()).unwrap();
    let store_a = Store::connect(&url).await.unwrap();
    let store_b = Store::connect(&url).await.unwrap();
    let a = strict(&store_a).await;
    let b = strict(&store_b).await;
    let mut listen_a = a.state.events.start_listener();
    let mut listen_b = b.state.events.start_listener();
    assert!(tokio::time::timeout(BOUND, listen_a.ready()).await.unwrap());
    assert!(tokio::time::timeout(BOUND, listen_b.ready()).await.unwrap());
    let w = workspace(&store_a, "w", None).await;
    let mut on_a = a.canvas().await;
    let mut on_b = b.canvas().await;

    // Small: the envelope travels in the notification.
    a.emit(
        EventType::WorkspaceOnline,
        Some(w),
        json!({"url": "http://w"}),
    )
    .await;
    // Too big for NOTIFY and recorded: sent by reference, read back from the log.
    let big = "x".repeat(10_000);
    a.emit(
        EventType::AgentCardUpdated,
        Some(w),
        json!({"agent_card": {"d": big}}),
    )
    .await;
    // Too big and broadcast-only: stays on its replica.
    a.emit(EventType::AgentMessage, Some(w), json!({"message": big}))
        .await;
    a.emit(EventType::CronExecuted, None, json!({"marker": 1}))
        .await;

    // B's listener takes A's notifications in order: the dropped one would have come
    // before the marker.
    let first = on_b.next().await;
    assert_eq!(first["event"], "WORKSPACE_ONLINE");
    assert_eq!(first["workspace_id"], w.to_string());
    assert_eq!(first["payload"], json!({"url": "http://w"}));
    let second = on_b.next().await;
    assert_eq!(second["event"], "AGENT_CARD_UPDATED");
    assert_eq!(second["workspace_id"], w.to_string());
    assert_eq!(
        second["payload"]["agent_card"]["d"].as_str().unwrap().len(),
        10_000
    );
    assert_eq!(on_b.next().await["payload"], json!({"marker": 1}));

    // The other way round.
    b.emit(
        EventType::WorkspaceHeartbeat,
        Some(w),
        json!({"active_tasks": 2}),
    )
    .await;
    assert_eq!(on_b.next().await["event"], "WORKSPACE_HEARTBEAT");

    // A saw each of its own events once (its listener skips its own notifications, which
    // PostgreSQL delivers before B's later one), then B's heartbeat.
    let mut seen_by_a = Vec::new();
    for _ in 0..5 {
        seen_by_a.push(on_a.next().await["event"].clone());
    }
    assert_eq!(
        seen_by_a,
        [
            "WORKSPACE_ONLINE",
            "AGENT_CARD_UPDATED",
            "AGENT_MESSAGE",
            "CRON_EXECUTED",
            "WORKSPACE_HEARTBEAT"
        ]
    );

    listen_a.stop().await;
    listen_b.stop().await;
    store_a.close().await;
    store_b.close().await;
}

#[tokio::test]
async fn there_is_no_replica_listener_on_sqlite() {
    let s = TestStore::sqlite().await;
    let state = AppState::new((*s).clone(), Security::dev());
    let mut listener = state.events.start_listener();
    assert!(!tokio::time::timeout(BOUND, listener.ready()).await.unwrap());
    listener.stop().await;
}
