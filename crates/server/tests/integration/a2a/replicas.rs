//! Two replicas on one PostgreSQL database, each with its own registry cache: what one of
//! them revokes or removes, the other stops proxying for, within the notification time. The
//! second replica keeps cache entries for an hour, so only `LISTEN/NOTIFY` can tell it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use molecule_store::StoreSettings;
use molecule_store::testing::TestStore;
use serde_json::Value;

use super::{a2a, message};
use crate::common::agent::TestAgent;
use crate::common::{TestServer, assert_status, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_refuses_a_revoked_caller_and_a_removed_target() {
    let a = TestServer::dev(TestStore::postgres().await).await;
    let b = a
        .replica(StoreSettings {
            cache_ttl: Duration::from_secs(3600),
            ..StoreSettings::default()
        })
        .await;
    let agent = TestAgent::start().await;
    let (target, _) = a.registered("target", &agent.url, None).await;
    let (caller, token) = a.registered("caller", &agent.url, None).await;
    let caller_id = caller.to_string();

    // Through `b`: the caller's token and both workspaces are now in b's cache.
    let reply = a2a(
        &b,
        target,
        Some(&caller_id),
        Some(&token),
        &message("m-1", "hi"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // `a` revokes the caller's token: `b` refuses it.
    let tokens = assert_status(
        a.call("GET", &format!("/workspaces/{caller}/tokens"), None, None)
            .await,
        200,
    );
    let listed: Vec<Value> = tokens["tokens"].as_array().cloned().unwrap_or_default();
    assert!(!listed.is_empty(), "{tokens}");
    for t in listed {
        let id = t["id"].as_str().unwrap();
        let path = format!("/workspaces/{caller}/tokens/{id}");
        assert_status(a.call("DELETE", &path, None, None).await, 200);
    }
    // Until the notification arrives, `b` may still deliver (the window the module doc
    // names); each such delivery is counted, and once refused the caller stays refused.
    let delivered = AtomicUsize::new(1);
    let revoked = || async {
        let reply = a2a(
            &b,
            target,
            Some(&caller_id),
            Some(&token),
            &message("m-2", "x"),
        )
        .await;
        if reply.status == 200 {
            delivered.fetch_add(1, Ordering::SeqCst);
        }
        reply.status == 401
    };
    eventually("b refuses the revoked caller token", revoked).await;
    assert!(revoked().await, "a refused caller stays refused");

    // `a` removes the target: `b` no longer proxies to it.
    assert_status(
        a.call(
            "DELETE",
            &format!("/workspaces/{target}?confirm=true"),
            None,
            None,
        )
        .await,
        200,
    );
    let removed = || async {
        let status = a2a(&b, target, None, None, &message("m-3", "x"))
            .await
            .status;
        if status == 200 {
            delivered.fetch_add(1, Ordering::SeqCst);
        }
        status == 404
    };
    eventually("b no longer proxies to the removed target", removed).await;
    assert!(removed().await, "a removed target stays gone");
    assert_eq!(
        agent.received().len(),
        delivered.load(Ordering::SeqCst),
        "nothing reached the agent after b refused it"
    );
}
