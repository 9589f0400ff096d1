//! Org API tokens: admin credentials (on admin and every workspace's routes) until revoked,
//! listed without their text, minted at a limited rate.

use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{TestServer, assert_error, assert_json, assert_status};

on_both_backends!(
    org_tokens_are_admin_until_revoked,
    org_token_minting_is_rate_limited,
);

async fn org_tokens_are_admin_until_revoked(db: TestStore) {
    let s = TestServer::strict(db).await;
    let ci = Some(json!({"name": "ci"}));
    let minted = assert_status(s.admin("POST", "/org/tokens", ci).await, 200);
    let token = minted["auth_token"].as_str().unwrap().to_owned();
    let org = Some(token.as_str());
    assert_eq!(token.len(), 43);
    assert_eq!(minted["name"], "ci");
    assert_eq!(minted["prefix"], token[..8]);
    assert_eq!(
        minted["warning"],
        "copy this token now; it will not be shown again"
    );
    // Admin routes and any workspace's routes.
    assert_status(s.call("GET", "/workspaces", org, None).await, 200);
    let id = s.create(json!({"name": "w"})).await;
    let model = format!("/workspaces/{id}/model");
    assert_status(s.call("GET", &model, org, None).await, 200);
    // A token minted by an org token records it.
    let child = assert_status(s.call_raw("POST", "/org/tokens", org, "").await, 200);
    assert!(child.get("name").is_none());
    let list = assert_status(s.admin("GET", "/org/tokens", None).await, 200);
    assert_eq!(list["count"], 2);
    let text = list.to_string();
    assert!(!text.contains(&token), "the token text was listed");
    let newest = &list["tokens"][0];
    assert_eq!(newest["id"], child["id"]);
    assert_eq!(newest["created_by"], format!("org-token:{}", &token[..8]));
    assert_eq!(list["tokens"][1]["created_by"], "admin-token");
    assert!(list["tokens"][1]["last_used_at"].is_string());
    // Name too long.
    let long = Some(json!({"name": "x".repeat(101)}));
    let refused = s.admin("POST", "/org/tokens", long).await;
    assert_json(
        refused,
        400,
        json!({"error": "name too long (max 100 chars)"}),
    );
    // Revoked: refused at once, everywhere.
    let tid = minted["id"].as_str().unwrap();
    let revoke = format!("/org/tokens/{tid}");
    assert_json(
        s.admin("DELETE", &revoke, None).await,
        200,
        json!({"revoked": tid}),
    );
    let as_admin = s.call("GET", "/workspaces", org, None).await;
    assert_json(as_admin, 401, json!({"error": "invalid admin auth token"}));
    let as_workspace = s.call("GET", &model, org, None).await;
    assert_json(
        as_workspace,
        401,
        json!({"error": "invalid workspace auth token"}),
    );
    assert_status(s.admin("DELETE", &revoke, None).await, 404);
    assert_status(s.admin("DELETE", "/org/tokens/junk", None).await, 404);
    // A workspace token is never admin, so it cannot mint.
    let wtoken = s.state.store.tokens().issue(id).await.unwrap().token;
    let minting = s.call("POST", "/org/tokens", Some(wtoken.expose()), None);
    assert_status(minting.await, 401);
}

async fn org_token_minting_is_rate_limited(db: TestStore) {
    let s = TestServer::strict(db).await;
    for n in 0..10 {
        let (status, reply) = s.admin("POST", "/org/tokens", None).await;
        assert_eq!(status, 200, "mint {n}: {reply}");
    }
    let refused = s.admin("POST", "/org/tokens", None).await;
    assert_error(refused, 429, "rate limit exceeded");
    // Listing is not limited.
    let (status, list) = s.admin("GET", "/org/tokens", None).await;
    assert_eq!((status, list["count"].as_i64()), (200, Some(10)));
}
