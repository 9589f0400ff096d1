//! The routes about one workspace besides its lifecycle: PATCH (validated, one transaction),
//! GET (410 for the removed, no operator fields), tokens, the budget and bootstrap-failed.

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::{ADMIN, TestServer, assert_error, assert_json, assert_status};

on_both_backends!(
    patch_validates_and_applies_in_one_transaction,
    get_answers_410_for_removed_and_hides_operator_fields,
    tokens_routes,
    budget_routes_and_bootstrap_failed,
);

async fn patch_validates_and_applies_in_one_transaction(db: TestStore) {
    let s = TestServer::strict(db).await;
    let a = s.create(json!({"name": "a"})).await;
    let b = s.create(json!({"name": "b", "parent_id": a})).await;
    let path = format!("/workspaces/{a}");
    let bad: &[(Value, &str)] = &[
        (
            json!({"name": "x\ny"}),
            "name must not contain newline characters",
        ),
        (
            json!({"name": "bad|name"}),
            "name contains invalid characters",
        ),
        (json!({"name": 5}), "name must be a string"),
        (
            json!({"role": "r".repeat(1001)}),
            "role must be at most 1000 characters",
        ),
        (json!({"tier": 9}), "tier must be between 1 and 4"),
        (json!({"parent_id": b}), "parent_id would create a cycle"),
        (json!({"parent_id": a}), "parent_id would create a cycle"),
        (json!({"parent_id": "zzz"}), "invalid parent_id"),
        (json!({"runtime": "nosuch"}), "unknown runtime \"nosuch\""),
        (
            json!({"workspace_dir": "/proc"}),
            "invalid workspace directory",
        ),
        (json!({"x": 1}), "x and y must be given together"),
        (json!({"collapsed": "yes"}), "collapsed must be a boolean"),
    ];
    for (body, message) in bad {
        // Every bad body also carries a valid change, which must not be written either.
        let mut body = body.clone();
        body.as_object_mut()
            .unwrap()
            .entry("role")
            .or_insert(json!("should not stick"));
        let (status, reply) = s.admin("PATCH", &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["error"], *message, "{body}");
    }
    assert_eq!(s.row(a).await.role, None, "nothing half-written");
    let (status, reply) = s
        .admin("PATCH", &path, Some(json!({"name": "A", "tier": 4, "x": 3.5, "y": 4, "collapsed": true, "workspace_dir": "/srv/a", "budget_limit": 9, "unknown": 1})))
        .await;
    assert_json(
        (status, reply),
        200,
        json!({"status": "updated", "needs_restart": true}),
    );
    let (_, list) = s.admin("GET", "/workspaces", None).await;
    let item = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == json!(a))
        .unwrap()
        .clone();
    assert_eq!(
        (
            item["name"].clone(),
            item["tier"].clone(),
            item["x"].clone(),
            item["collapsed"].clone()
        ),
        (json!("A"), json!(4), json!(3.5), json!(true))
    );
    assert_eq!(
        item["budget_limit"],
        Value::Null,
        "PATCH never changes the budget"
    );
    let unknown = format!("/workspaces/{}", WorkspaceId::new());
    let renamed = s.admin("PATCH", &unknown, Some(json!({"name": "n"}))).await;
    assert_status(renamed, 404);
    let (status, _) = s.call_raw("PATCH", &path, Some(ADMIN), "[1,2]").await;
    assert_eq!(status, 400);
}

async fn get_answers_410_for_removed_and_hides_operator_fields(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "g", "budget_limit": 100})).await;
    let path = format!("/workspaces/{id}");
    let (status, reply) = s.call("GET", &path, None, None).await;
    assert_eq!(status, 200);
    for hidden in [
        "budget_limit",
        "monthly_spend",
        "current_task",
        "last_sample_error",
        "workspace_dir",
    ] {
        assert!(reply.get(hidden).is_none(), "{hidden} is shown");
    }
    assert!(reply.get("last_outbound_at").is_some());
    let invalid = s.call("GET", "/workspaces/xyz", None, None).await;
    assert_error(invalid, 400, "invalid workspace ID");
    let unknown = format!("/workspaces/{}", WorkspaceId::new());
    assert_status(s.call("GET", &unknown, None, None).await, 404);
    s.admin("DELETE", &path, None).await;
    let removed = s.call("GET", &path, None, None).await;
    assert_error(removed, 410, "workspace removed");
    let (status, reply) = s
        .call("GET", &format!("{path}?include_removed=true"), None, None)
        .await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("removed")));
    let state = s.admin("GET", &format!("{path}/state"), None).await;
    assert_json(
        state,
        404,
        json!({"workspace_id": id, "status": "removed", "deleted": true}),
    );
}

async fn tokens_routes(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "t"})).await;
    // Provisioning revokes every older token: issue ours after it.
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let tokens = format!("/workspaces/{id}/tokens");
    let reply = assert_status(s.admin("POST", &tokens, None).await, 201);
    let token = reply["auth_token"].as_str().unwrap().to_owned();
    assert_eq!(
        reply["message"],
        "Save this token now — it cannot be retrieved again."
    );
    let reply = assert_status(s.call("GET", &tokens, Some(&token), None).await, 200);
    let listed = reply["tokens"].as_array().unwrap();
    assert_eq!(reply["count"], listed.len());
    let mine = listed
        .iter()
        .find(|t| t["prefix"] == json!(&token[..8]))
        .unwrap();
    assert!(mine.get("token_hash").is_none() && mine.get("auth_token").is_none());
    let token_id = mine["id"].as_str().unwrap().to_owned();
    let revoke = format!("{tokens}/{token_id}");
    let (status, reply) = s.admin("DELETE", &revoke, None).await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("revoked")));
    let again = s.admin("DELETE", &revoke, None).await;
    assert_error(again, 404, "token not found or already revoked");
    let (status, _) = s.call("GET", &tokens, Some(&token), None).await;
    assert_eq!(status, 401, "a revoked token stops working at once");

    // The test-token route needs the admin token outside dev mode.
    let test_token = format!("/admin/workspaces/{id}/test-token");
    assert_status(s.call("GET", &test_token, None, None).await, 401);
    let reply = assert_status(s.admin("GET", &test_token, None).await, 200);
    assert_eq!(reply["workspace_id"], json!(id));
    let unknown = format!("/admin/workspaces/{}/test-token", WorkspaceId::new());
    assert_status(s.admin("GET", &unknown, None).await, 404);
}

async fn budget_routes_and_bootstrap_failed(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "b"})).await;
    let path = format!("/workspaces/{id}/budget");
    assert_json(
        s.admin("GET", &path, None).await,
        200,
        json!({"budget_limit": null, "monthly_spend": 0, "budget_remaining": null}),
    );
    for (body, message) in [
        (json!({}), "budget_limit field is required"),
        (
            json!({"budget_limit": -5}),
            "budget_limit must be >= 0 (USD cents)",
        ),
        (
            json!({"budget_limit": "5"}),
            "budget_limit must be an integer (USD cents) or null",
        ),
    ] {
        assert_error(s.admin("PATCH", &path, Some(body)).await, 400, message);
    }
    let limit = Some(json!({"budget_limit": 250.9}));
    assert_json(
        s.admin("PATCH", &path, limit).await,
        200,
        json!({"budget_limit": 250, "monthly_spend": 0, "budget_remaining": 250}),
    );

    let failed = format!("/admin/workspaces/{id}/bootstrap-failed");
    let long = "x".repeat(10_000);
    let report = Some(json!({"error": "", "log_tail": long}));
    assert_json(
        s.admin("POST", &failed, report).await,
        200,
        json!({"ok": true}),
    );
    let ws = s.row(id).await;
    assert_eq!(ws.status, WorkspaceStatus::Failed);
    let reason = ws.last_sample_error.unwrap();
    assert!(reason.starts_with("bootstrap failed — see log_tail\n\n...(truncated)...\n"));
    assert!(reason.len() <= 8192);
    let again = s.admin("POST", &failed, Some(json!({"error": "again"})));
    assert_json(again.await, 200, json!({"ok": true, "no_change": true}));
}
