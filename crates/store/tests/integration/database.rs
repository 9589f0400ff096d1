//! The database itself: migrations are idempotent on reopen, a reference server's database is
//! adopted in place, notifications reach listeners (PostgreSQL only), and the event log.

use molecule_domain::{DeliveryMode, WorkspaceId, WorkspaceStatus};
use molecule_store::testing::TestStore;
use molecule_store::{Backend, on_both_backends};

use crate::common::named;

on_both_backends!(
    migrations_are_idempotent_on_reopen,
    notifications_reach_listeners_on_postgres_only,
    events_are_recorded_and_listed_newest_first,
);

async fn migrations_are_idempotent_on_reopen(s: TestStore) {
    let ws = named(&s, "kept").await;
    let url = molecule_store::DatabaseUrl::parse(s.url()).unwrap();
    let again = molecule_store::Store::connect(&url).await.unwrap();
    assert_eq!(
        again.workspaces().get(ws.id).await.unwrap().unwrap().name,
        "kept"
    );
    again.ping().await.unwrap();
    assert_eq!(again.backend(), s.backend());
    again.close().await;
}

/// A database made by the reference server (its `schema_migrations` table, the enum with its
/// first eight values, an older `workspaces` table and a row in it) is adopted in place.
#[tokio::test]
async fn a_reference_database_is_adopted_in_place() {
    use sqlx::Connection;
    let fresh = TestStore::postgres().await;
    // Start from an empty database of the same server, shaped like an older reference one.
    let (server, _) = fresh.url().rsplit_once('/').unwrap();
    let name = format!("molecule_ref_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(fresh.url()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut reference = sqlx::PgConnection::connect(&format!("{server}/{name}"))
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (filename TEXT PRIMARY KEY, \
           applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (filename) VALUES ('001_initial.sql'), ('043_status_enum.up.sql');
         CREATE TYPE workspace_status AS ENUM ('provisioning', 'online', 'offline', 'degraded',
           'failed', 'removed', 'paused', 'hibernated');
         CREATE TABLE workspaces (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), name TEXT NOT NULL,
           role TEXT, tier INTEGER DEFAULT 1, status workspace_status DEFAULT 'provisioning',
           url TEXT, agent_card JSONB, parent_id UUID REFERENCES workspaces(id),
           forwarded_to UUID REFERENCES workspaces(id), last_heartbeat_at TIMESTAMPTZ,
           last_error_rate FLOAT8 DEFAULT 0, last_sample_error TEXT, active_tasks INTEGER DEFAULT 0,
           uptime_seconds INTEGER DEFAULT 0, created_at TIMESTAMPTZ DEFAULT now(),
           updated_at TIMESTAMPTZ DEFAULT now(), runtime TEXT DEFAULT 'langgraph');
         INSERT INTO workspaces (id, name, status) VALUES
           ('6f9619ff-8b86-d011-b42d-00c04fc964ff', 'legacy', 'online');",
    )
    .execute(&mut reference)
    .await
    .unwrap();
    reference.close().await.unwrap();

    let store = molecule_store::Store::connect(
        &molecule_store::DatabaseUrl::parse(&format!("{server}/{name}")).unwrap(),
    )
    .await
    .expect("adopt the reference database");
    let id: WorkspaceId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
    let legacy = store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(legacy.name, "legacy");
    assert_eq!(legacy.status, WorkspaceStatus::Online);
    assert_eq!(
        legacy.delivery_mode,
        DeliveryMode::Push,
        "added column, default"
    );
    // The two values the reference added late are usable at once.
    store
        .workspaces()
        .transition(id, WorkspaceStatus::AwaitingAgent, None)
        .await
        .unwrap();
    let issued = store.tokens().issue(id).await.unwrap();
    assert!(store.tokens().validate(id, &issued.token).await.unwrap());
    store.close().await;
    let _ = admin.close().await;
}

async fn notifications_reach_listeners_on_postgres_only(s: TestStore) {
    use std::time::Duration;
    let Some(mut listener) = s.event_listener("molecule_test").await.unwrap() else {
        assert_eq!(s.backend(), Backend::Sqlite);
        // Notifying is a no-op without listeners to reach.
        s.events().notify("molecule_test", "hello").await.unwrap();
        return;
    };
    // A second pool on the same database, as another replica would have.
    let url = molecule_store::DatabaseUrl::parse(s.url()).unwrap();
    let other = molecule_store::Store::connect(&url).await.unwrap();
    other
        .events()
        .notify("molecule_test", "from the other replica")
        .await
        .unwrap();
    let big = "é".repeat(molecule_store::MAX_NOTIFY_BYTES / 2);
    s.events().notify("molecule_test", &big).await.unwrap();
    s.events().notify("elsewhere", "not for us").await.unwrap();
    s.events().notify("molecule_test", "last").await.unwrap();
    let bound = Duration::from_secs(10);
    for expected in ["from the other replica", big.as_str(), "last"] {
        let got = tokio::time::timeout(bound, listener.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, expected);
    }
    other.close().await;
}

async fn events_are_recorded_and_listed_newest_first(s: TestStore) {
    let ws = named(&s, "e").await.id;
    let first = s
        .events()
        .record(
            "WORKSPACE_PROVISIONING",
            Some(ws),
            &serde_json::json!({"name": "e"}),
        )
        .await
        .unwrap();
    let second = s
        .events()
        .record("WORKSPACE_ONLINE", Some(ws), &serde_json::json!({}))
        .await
        .unwrap();
    s.events()
        .record("OTHER", None, &serde_json::json!({}))
        .await
        .unwrap();
    let mine = s.events().recent(Some(ws), 100).await.unwrap();
    assert_eq!(
        mine.iter().map(|e| e.id).collect::<Vec<_>>(),
        [second.id, first.id]
    );
    assert_eq!(mine[1].payload, Some(serde_json::json!({"name": "e"})));
    assert_eq!(s.events().recent(None, 2).await.unwrap().len(), 2);
    assert_eq!(
        s.events().get(first.id).await.unwrap().unwrap().event_type,
        "WORKSPACE_PROVISIONING"
    );
}
