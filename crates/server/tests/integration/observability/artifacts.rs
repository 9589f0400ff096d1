//! Cloudflare Artifacts (§1.18): this server has no Cloudflare client, so every route answers
//! the "not configured" 503 to its workspace, whatever the body, and writes nothing.

use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{TestServer, assert_error};

on_both_backends!(artifacts_answer_not_configured);

const NOT_CONFIGURED: &str =
    "Cloudflare Artifacts not configured — set CF_ARTIFACTS_API_TOKEN and CF_ARTIFACTS_NAMESPACE";

async fn artifacts_answer_not_configured(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "repo-owner"})).await;
    let token = s.backend().token_of(id).await;
    let base = format!("/workspaces/{id}/artifacts");
    for (method, path, body) in [
        ("POST", base.clone(), Some(json!({"name": "my-repo"}))),
        ("POST", base.clone(), None),
        ("GET", base.clone(), None),
        (
            "POST",
            format!("{base}/fork"),
            Some(json!({"name": "fork"})),
        ),
        (
            "POST",
            format!("{base}/token"),
            Some(json!({"scope": "read"})),
        ),
    ] {
        let reply = s.call(method, &path, Some(&token), body).await;
        assert_error(reply, 503, NOT_CONFIGURED);
    }
    // The guard runs first.
    let reply = s.call("GET", &base, None, None).await;
    assert_error(reply, 401, "missing workspace auth token");
}
