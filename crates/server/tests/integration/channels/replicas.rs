//! Several replicas on one database: each polling channel has one poller, held by a lease in
//! the database; the other replica takes over once the holder gives it up.

use molecule_store::testing::TestStore;
use serde_json::json;

use super::fake::{BOT_TOKEN, FakeChats};
use super::{create_channel, manager_at, server};

molecule_store::on_both_backends!(one_poller_per_channel_across_replicas);

async fn one_poller_per_channel_across_replicas(db: TestStore) {
    let fake = FakeChats::start().await;
    let s = server(db, &fake).await;
    let (ws, _) = s.provisioned("polled", None).await;
    let id = create_channel(
        &s,
        ws,
        json!({"channel_type": "telegram", "config": {"bot_token": BOT_TOKEN, "chat_id": "42"}}),
    )
    .await;
    let id: uuid::Uuid = id.parse().unwrap();
    // Two replicas' managers on the same database, each with its own lease name.
    let a = manager_at(&s.state, &fake.base);
    let b = manager_at(&s.state, &fake.base);
    assert_ne!(a.holder(), b.holder());
    for _ in 0..3 {
        a.reconcile().await;
        b.reconcile().await;
    }
    assert_eq!(a.polling(), vec![id], "the first replica holds the lease");
    assert!(
        b.polling().is_empty(),
        "the second replica does not poll it too"
    );
    let (holder, _) = s
        .state
        .store
        .channels()
        .poll_holder(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder, a.holder());
    // The holder gives the channel up (disabled, then enabled again): the other takes it.
    let path = format!("/workspaces/{ws}/channels/{id}");
    let admin = Some(crate::common::ADMIN);
    let off = s.call("PATCH", &path, admin, Some(json!({"enabled": false})));
    crate::common::assert_status(off.await, 200);
    a.reconcile().await;
    assert!(a.polling().is_empty());
    let on = s.call("PATCH", &path, admin, Some(json!({"enabled": true})));
    crate::common::assert_status(on.await, 200);
    b.reconcile().await;
    a.reconcile().await;
    assert_eq!(b.polling(), vec![id]);
    assert!(a.polling().is_empty());
}
