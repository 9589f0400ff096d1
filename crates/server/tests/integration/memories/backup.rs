//! Admin memory backup over real HTTP, both databases: export (redacted), wipe, import, and a
//! second import that creates nothing new.

use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::{commit, contents, recall};
use crate::common::ADMIN;
use crate::common::TestServer;

on_both_backends!(export_wipe_import_round_trip);

async fn export_wipe_import_round_trip(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (lead, lead_token) = s.provisioned("lead", None).await;
    let (a, a_token) = s.provisioned("a", Some(lead)).await;
    commit(
        &s,
        lead,
        &lead_token,
        json!({"content": "global rule", "scope": "GLOBAL"}),
    )
    .await;
    commit(
        &s,
        a,
        &a_token,
        json!({"content": "team fact", "scope": "TEAM", "namespace": "facts"}),
    )
    .await;
    commit(
        &s,
        a,
        &a_token,
        json!({"content": "mine", "scope": "LOCAL"}),
    )
    .await;
    let (status, _) = s
        .call("GET", "/admin/memories/export", Some(&a_token), None)
        .await;
    assert_eq!(status, 401, "a workspace token is never admin");
    let (status, exported) = s
        .call("GET", "/admin/memories/export", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let rows = exported.as_array().unwrap().clone();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["content"], "global rule");
    assert_eq!(rows[0]["workspace_name"], "lead");
    assert_eq!(rows[1]["namespace"], "facts");

    // Importing what is there creates nothing.
    let (status, reply) = s
        .call(
            "POST",
            "/admin/memories/import",
            Some(ADMIN),
            Some(exported.clone()),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"imported": 0, "skipped": 3, "errors": 0, "total": 3})
    );
    // Wipe, import, twice: the second import changes nothing.
    for row in &rows {
        let owner = if row["workspace_name"] == "lead" {
            (lead, &lead_token)
        } else {
            (a, &a_token)
        };
        let (status, _) = s
            .call(
                "DELETE",
                &format!(
                    "/workspaces/{}/memories/{}",
                    owner.0,
                    row["id"].as_str().unwrap()
                ),
                Some(owner.1),
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    let (_, empty) = s
        .call("GET", "/admin/memories/export", Some(ADMIN), None)
        .await;
    assert_eq!(empty, json!([]));
    let (_, reply) = s
        .call(
            "POST",
            "/admin/memories/import",
            Some(ADMIN),
            Some(exported.clone()),
        )
        .await;
    assert_eq!(
        reply,
        json!({"imported": 3, "skipped": 0, "errors": 0, "total": 3})
    );
    let (_, reply) = s
        .call(
            "POST",
            "/admin/memories/import",
            Some(ADMIN),
            Some(exported.clone()),
        )
        .await;
    assert_eq!(
        reply,
        json!({"imported": 0, "skipped": 3, "errors": 0, "total": 3})
    );
    let (_, again) = s
        .call("GET", "/admin/memories/export", Some(ADMIN), None)
        .await;
    let strip = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["content"].clone(),
                    r["scope"].clone(),
                    r["namespace"].clone(),
                    r["created_at"].clone(),
                    r["workspace_name"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&exported));
    // Secrets are redacted on import; bad entries are counted; bad JSON is refused.
    let (_, reply) = s
        .call(
            "POST",
            "/admin/memories/import",
            Some(ADMIN),
            Some(json!([
                {"content": "DATABASE_SECRET=hunter2", "scope": "LOCAL", "workspace_name": "a"},
                {"content": "x", "scope": "LOCAL", "workspace_name": "nobody"},
                {"content": "x", "scope": "GLOBAL", "workspace_name": "a"},
            ])),
        )
        .await;
    assert_eq!(
        reply,
        json!({"imported": 1, "skipped": 1, "errors": 1, "total": 3})
    );
    let items = recall(&s, a, &a_token, "scope=LOCAL").await;
    assert!(contents(&items).contains(&"[REDACTED:SECRET]".to_owned()));
    let (status, reply) = s
        .call_raw("POST", "/admin/memories/import", Some(ADMIN), "{\"oops\":")
        .await;
    assert_eq!(status, 400);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON: "),
        "{reply}"
    );
}
