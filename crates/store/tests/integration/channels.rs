//! Chat channels in the store, both databases: sensitive values sealed at rest and opened on
//! read (legacy plaintext still reads), CRUD scoped to the workspace, polling leases with
//! expiry, and the chat history kept per channel and chat.

use molecule_store::testing::TestStore;
use molecule_store::{ChannelUpdate, NewChannel, StoreError, on_both_backends};
use serde_json::{Map, Value, json};

use crate::common::{at, keyed, workspace};

on_both_backends!(
    sealed_at_rest_and_scoped,
    leases_give_one_holder,
    history_per_chat
);

fn config(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn new(ws: molecule_domain::WorkspaceId, kind: &str) -> NewChannel {
    NewChannel {
        workspace_id: ws,
        channel_type: kind.into(),
        config: config(json!({"bot_token": "123:secret-token", "chat_id": "1,2"})),
        sensitive: vec!["bot_token".into(), "webhook_secret".into()],
        allowed_users: vec!["7".into()],
        enabled: true,
    }
}

async fn sealed_at_rest_and_scoped(db: TestStore) {
    let s = keyed(&db);
    let ws = workspace(&s, "a", None).await;
    let other = workspace(&s, "b", None).await;
    let channels = s.channels();
    let c = channels.create(&new(ws, "telegram")).await.unwrap();
    assert_eq!(c.config["bot_token"], "123:secret-token");
    assert_eq!(c.allowed_users, vec!["7"]);
    let raw = channels.stored_config(c.id).await.unwrap().unwrap();
    let sealed = raw["bot_token"].as_str().unwrap();
    assert!(
        sealed.starts_with("ec1:") && !raw.to_string().contains("secret-token"),
        "{raw}"
    );
    assert_eq!(raw["chat_id"], "1,2");
    assert!(matches!(
        channels.create(&new(ws, "telegram")).await,
        Err(StoreError::Duplicate)
    ));
    // Another key cannot open it: the row still reads, with the error.
    let wrong = keyed(&db);
    let read = wrong.channels().get(ws, c.id).await.unwrap().unwrap();
    assert!(read.config_error.is_some());
    // Legacy plaintext (written without a key) reads as it is.
    let plain = (*db)
        .clone()
        .channels()
        .create(&new(other, "slack"))
        .await
        .unwrap();
    let raw = channels.stored_config(plain.id).await.unwrap().unwrap();
    assert_eq!(raw["bot_token"], "123:secret-token");
    assert_eq!(
        channels.get(other, plain.id).await.unwrap().unwrap().config["bot_token"],
        "123:secret-token"
    );
    // Scoped to the workspace.
    assert!(channels.get(other, c.id).await.unwrap().is_none());
    let off = ChannelUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    assert!(!channels.update(other, c.id, &off).await.unwrap());
    assert!(!channels.delete(other, c.id).await.unwrap());
    assert!(channels.update(ws, c.id, &off).await.unwrap());
    assert!(channels.enabled(Some("telegram")).await.unwrap().is_empty());
    let budget = ChannelUpdate {
        channel_budget: Some(Some(3)),
        ..Default::default()
    };
    assert!(channels.update(ws, c.id, &budget).await.unwrap());
    channels.record_message(c.id).await.unwrap();
    let c2 = channels.get(ws, c.id).await.unwrap().unwrap();
    assert_eq!(
        (c2.channel_budget, c2.message_count, c2.enabled),
        (Some(3), 1, false)
    );
    assert!(c2.last_message_at.is_some());
    assert_eq!(
        c2.config["bot_token"], "123:secret-token",
        "a budget change keeps the config"
    );
    // Removing the workspace disables its channels.
    s.workspaces().remove_all(&[other]).await.unwrap();
    assert!(
        !channels
            .get(other, plain.id)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert!(channels.delete(ws, c.id).await.unwrap());
    assert!(channels.list(ws).await.unwrap().is_empty());
}

async fn leases_give_one_holder(db: TestStore) {
    let s = keyed(&db);
    let ws = workspace(&s, "a", None).await;
    let channels = s.channels();
    let c = channels.create(&new(ws, "telegram")).await.unwrap();
    let lease = time::Duration::seconds(30);
    assert!(channels.claim_poll(c.id, "r1", at(0), lease).await.unwrap());
    assert!(
        !channels
            .claim_poll(c.id, "r2", at(10), lease)
            .await
            .unwrap(),
        "held by r1"
    );
    assert!(
        channels
            .claim_poll(c.id, "r1", at(20), lease)
            .await
            .unwrap(),
        "renewed"
    );
    assert!(
        !channels
            .claim_poll(c.id, "r2", at(45), lease)
            .await
            .unwrap(),
        "renewed until 50"
    );
    assert!(
        channels
            .claim_poll(c.id, "r2", at(50), lease)
            .await
            .unwrap(),
        "expired: taken over"
    );
    assert_eq!(channels.poll_holder(c.id).await.unwrap().unwrap().0, "r2");
    channels.release_poll(c.id, "r1").await.unwrap();
    assert_eq!(
        channels.poll_holder(c.id).await.unwrap().unwrap().0,
        "r2",
        "only the holder releases"
    );
    channels.release_poll(c.id, "r2").await.unwrap();
    assert!(
        channels
            .claim_poll(c.id, "r1", at(51), lease)
            .await
            .unwrap()
    );
}

async fn history_per_chat(db: TestStore) {
    let s = keyed(&db);
    let ws = workspace(&s, "a", None).await;
    let channels = s.channels();
    let c = channels.create(&new(ws, "telegram")).await.unwrap();
    let day = time::Duration::days(1);
    for i in 0..12 {
        channels
            .push_history(c.id, "1", json!({"n": i}), at(i), day)
            .await
            .unwrap();
    }
    let h = channels.history(c.id, "1", at(12), day).await.unwrap();
    assert_eq!(h.len(), 10);
    assert_eq!(
        (h[0]["n"].clone(), h[9]["n"].clone()),
        (json!(11), json!(2))
    );
    assert!(
        channels
            .history(c.id, "2", at(12), day)
            .await
            .unwrap()
            .is_empty(),
        "per chat"
    );
    assert!(
        channels
            .history(c.id, "1", at(100_000), day)
            .await
            .unwrap()
            .is_empty(),
        "a day old"
    );
    channels.clear_history(c.id, "1").await.unwrap();
    assert!(
        channels
            .history(c.id, "1", at(12), day)
            .await
            .unwrap()
            .is_empty()
    );
}
