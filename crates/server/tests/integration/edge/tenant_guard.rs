//! The tenant guard: with an org id, only the exact allow-listed paths and requests carrying
//! `X-Molecule-Org-Id` with that id get through; the rest is a 404 with an empty body (the
//! security headers still on it).

use molecule_server::HttpSettings;
use molecule_store::testing::TestStore;

use crate::common::{ADMIN, Options, TestServer};

async fn guarded() -> TestServer {
    TestServer::start_configured(TestStore::sqlite().await, Options::STRICT, |s| {
        s.with_http(HttpSettings {
            tenant_org_id: Some("org-1".into()),
            ..HttpSettings::default()
        })
    })
    .await
}

async fn get(s: &TestServer, path: &str, org: Option<&str>) -> (u16, String, bool) {
    let mut request = s.http.get(format!("{}{path}", s.base)).bearer_auth(ADMIN);
    if let Some(org) = org {
        request = request.header("X-Molecule-Org-Id", org);
    }
    let response = request.send().await.unwrap();
    let headers = response.headers().contains_key("x-content-type-options");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap(), headers)
}

#[tokio::test]
async fn only_the_org_and_the_allow_list_pass() {
    let s = guarded().await;
    for open in ["/health", "/buildinfo", "/metrics"] {
        assert_eq!(get(&s, open, None).await.0, 200, "{open}");
    }
    // Agents register and heartbeat without the header: the route answers, not the guard.
    let (status, body) = s
        .call(
            "POST",
            "/registry/heartbeat",
            None,
            Some(serde_json::json!({})),
        )
        .await;
    assert_ne!((status, body), (404, serde_json::Value::Null));

    let refused = get(&s, "/workspaces", None).await;
    assert_eq!(
        refused,
        (404, String::new(), true),
        "404, empty, with headers"
    );
    assert_eq!(get(&s, "/workspaces", Some("org-2")).await.0, 404);
    assert_eq!(get(&s, "/workspaces", Some("org-1")).await.0, 200);
    // Exact matches only.
    assert_eq!(get(&s, "/health/x", None).await, (404, String::new(), true));
    assert_eq!(get(&s, "/openapi.json", None).await.1, "");
    // With the header, an unknown path is the router's own plain 404.
    assert_eq!(
        get(&s, "/health/x", Some("org-1")).await.1,
        "404 page not found"
    );
}

#[tokio::test]
async fn no_org_id_no_guard() {
    let s = TestServer::strict(TestStore::sqlite().await).await;
    assert_eq!(get(&s, "/workspaces", None).await.0, 200);
}
