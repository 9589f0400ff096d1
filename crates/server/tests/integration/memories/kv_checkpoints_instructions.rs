//! Key/value memory, workflow checkpoints and platform instructions over real HTTP against
//! the real router, on both databases (`observability.md` §1.11, §1.13, §1.16; invariants
//! 36, 38, 48).

use crate::common::{ADMIN, TestServer};
use molecule_domain::WorkspaceId;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

on_both_backends!(
    kv_memory_versions_ttl_and_limits,
    checkpoints_upsert_list_latest_delete,
    instructions_crud_and_resolution_order,
);

async fn kv_memory_versions_ttl_and_limits(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (a, token) = s.provisioned("a", None).await;
    let path = format!("/workspaces/{a}/memory");
    let set = async |body: Value| s.call("POST", &path, Some(&token), Some(body)).await;

    assert_eq!(
        set(json!({"key": "plan", "value": {"step": 1}})).await,
        (200, json!({"status": "ok", "key": "plan", "version": 1}))
    );
    assert_eq!(
        set(json!({"key": "plan", "value": [1, 2]})).await.1["version"],
        2
    );
    let (status, reply) = set(json!({"key": "plan", "value": 3, "if_match_version": 1})).await;
    assert_eq!(status, 409);
    assert_eq!(
        reply,
        json!({"error": "if_match_version mismatch", "expected_version": 1, "current_version": 2})
    );
    assert_eq!(
        set(json!({"key": "plan", "value": 3, "if_match_version": 2}))
            .await
            .1["version"],
        3
    );
    let (status, reply) = set(json!({"key": "new", "value": 0, "if_match_version": 4})).await;
    assert_eq!(status, 409);
    assert_eq!(
        reply,
        json!({"error": "if_match_version mismatch: key does not exist",
               "expected_version": 4, "current_version": null})
    );
    assert_eq!(
        set(json!({"key": "new", "value": null, "if_match_version": 0})).await,
        (200, json!({"status": "ok", "key": "new", "version": 1}))
    );
    // A negative TTL is already expired; a positive one is listed with its expiry.
    assert_eq!(
        set(json!({"key": "gone", "value": "x", "ttl_seconds": -1}))
            .await
            .0,
        200
    );
    assert_eq!(
        set(json!({"key": "soon", "value": "y", "ttl_seconds": 3600}))
            .await
            .0,
        200
    );
    let (status, list) = s.call("GET", &path, Some(&token), None).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    let keys: Vec<&str> = list.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["new", "plan", "soon"]);
    assert_eq!(list[1]["value"], 3);
    assert!(list[1].get("expires_at").is_none(), "no TTL: no key");
    assert!(list[2]["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(list[0]["value"], Value::Null);
    let (status, reply) = s
        .call("GET", &format!("{path}/gone"), Some(&token), None)
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("key not found"))
    );
    let (status, entry) = s
        .call("GET", &format!("{path}/plan"), Some(&token), None)
        .await;
    assert_eq!((status, entry["version"].as_i64()), (200, Some(3)));

    // Bad input is refused and writes nothing.
    let big = "x".repeat(300 * 1024);
    let cases = [
        (json!({"value": 1}), 400, "key is required"),
        (json!({"key": "", "value": 1}), 400, "key is required"),
        (json!({"key": "k"}), 400, "value is required"),
        (
            json!({"key": "k".repeat(257), "value": 1}),
            400,
            "key must be <= 256 characters",
        ),
        (
            json!({"key": "k", "value": big}),
            413,
            "value must be <= 262144 bytes",
        ),
        (
            json!({"key": "k", "value": 1, "ttl_seconds": i64::MAX}),
            400,
            "ttl_seconds out of range",
        ),
        (
            json!({"key": "k", "value": 1, "ttl_seconds": "soon"}),
            400,
            "invalid request body",
        ),
    ];
    for (body, want, message) in cases {
        let (status, reply) = set(body.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (want, Some(message)),
            "{body}"
        );
    }
    let (status, _) = s
        .call("GET", &format!("{path}/k"), Some(&token), None)
        .await;
    assert_eq!(status, 404);

    // Delete answers 200 whether or not the key existed.
    for _ in 0..2 {
        let (status, reply) = s
            .call("DELETE", &format!("{path}/plan"), Some(&token), None)
            .await;
        assert_eq!((status, reply), (200, json!({"status": "deleted"})));
    }
    let (status, _) = s
        .call("GET", &format!("{path}/plan"), Some(&token), None)
        .await;
    assert_eq!(status, 404);
}

async fn checkpoints_upsert_list_latest_delete(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (a, token) = s.provisioned("a", None).await;
    let base = format!("/workspaces/{a}/checkpoints");
    let (status, reply) = s
        .call("GET", &format!("{base}/latest"), Some(&token), None)
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("no checkpoints found for workspace"))
    );
    let post = async |body: Value| s.call("POST", &base, Some(&token), Some(body)).await;
    let (status, first) = post(
        json!({"workflow_id": "wf-1", "step_name": "fetch", "step_index": 0, "payload": {"rows": 10}}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["workspace_id"], a.to_string());
    assert_eq!(first["workflow_id"], "wf-1");
    assert_eq!(first["step_name"], "fetch");
    let (status, _) =
        post(json!({"workflow_id": "wf-1", "step_name": "parse", "step_index": 1})).await;
    assert_eq!(status, 201);
    // The same step again updates its row: latest payload wins, same id.
    let (status, again) = post(
        json!({"workflow_id": "wf-1", "step_name": "fetch", "step_index": 2, "payload": {"rows": 11}}),
    )
    .await;
    assert_eq!((status, &again["id"]), (201, &first["id"]));

    let (status, steps) = s
        .call("GET", &format!("{base}/wf-1"), Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let steps = steps.as_array().unwrap();
    let order: Vec<(&str, i64)> = steps
        .iter()
        .map(|c| {
            (
                c["step_name"].as_str().unwrap(),
                c["step_index"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(order, [("fetch", 2), ("parse", 1)]);
    assert_eq!(steps[0]["payload"], json!({"rows": 11}));
    assert_eq!(steps[1]["payload"], Value::Null);
    // `latest` is its own route, never a workflow called "latest".
    let (status, latest) = s
        .call("GET", &format!("{base}/latest"), Some(&token), None)
        .await;
    assert_eq!((status, latest["step_name"].as_str()), (200, Some("fetch")));

    for body in [
        json!({"step_name": "x"}),
        json!({"workflow_id": "wf", "step_name": ""}),
        json!({"workflow_id": "wf", "step_name": "x", "step_index": 1u64 << 40}),
        json!({"workflow_id": "wf", "step_name": "x", "step_index": "one"}),
    ] {
        let (status, reply) = post(body.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some("invalid request body")),
            "{body}"
        );
    }
    let (status, reply) = s
        .call("GET", &format!("{base}/nope"), Some(&token), None)
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("no checkpoints found for workflow"))
    );
    let (status, reply) = s
        .call("DELETE", &format!("{base}/wf-1"), Some(&token), None)
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"deleted": 2, "workflow_id": "wf-1"}))
    );
    let (status, _) = s
        .call("DELETE", &format!("{base}/wf-1"), Some(&token), None)
        .await;
    assert_eq!(status, 404);
    // Another workspace's token never reaches them.
    let (_, other) = s.provisioned("b", None).await;
    let (status, _) = s
        .call("GET", &format!("{base}/latest"), Some(&other), None)
        .await;
    assert_eq!(status, 401);
}

async fn instructions_crud_and_resolution_order(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (lead, lead_token) = s.provisioned("lead", None).await;
    let (w, w_token) = s.provisioned("w", Some(lead)).await;
    let (other, _) = s.provisioned("other", None).await;
    let create = async |body: Value| {
        let (status, reply) = s
            .call("POST", "/instructions", Some(ADMIN), Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
        reply["id"].as_str().unwrap().to_owned()
    };
    create(json!({"scope": "workspace", "scope_target": w, "title": "W", "content": "only w"}))
        .await;
    create(json!({"scope": "team", "scope_target": lead, "title": "T", "content": "lead's team"}))
        .await;
    create(json!({"scope": "global", "title": "G1", "content": "be kind", "priority": 1})).await;
    let g9 = create(json!({"scope": "global", "title": "G9", "content": "be safe", "priority": 9}))
        .await;
    create(json!({"scope": "workspace", "scope_target": other, "title": "O", "content": "other"}))
        .await;

    let resolve = async |id: WorkspaceId, token: &str| {
        let (status, reply) = s
            .call(
                "GET",
                &format!("/workspaces/{id}/instructions/resolve"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["workspace_id"], id.to_string());
        reply["instructions"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        resolve(w, &w_token).await,
        "\n## Platform-Wide Rules\n\n### G9\nbe safe\n\n### G1\nbe kind\n\n\
         \n## Team Rules\n\n### T\nlead's team\n\n\
         \n## Role-Specific Rules\n\n### W\nonly w\n\n"
    );
    assert_eq!(
        resolve(lead, &lead_token).await,
        "\n## Platform-Wide Rules\n\n### G9\nbe safe\n\n### G1\nbe kind\n\n\
         \n## Team Rules\n\n### T\nlead's team\n\n"
    );
    // Disabled rules drop out; priority and text can change; scope cannot.
    let path = format!("/instructions/{g9}");
    let (status, reply) = s
        .call(
            "PUT",
            &path,
            Some(ADMIN),
            Some(json!({"enabled": false, "scope": "workspace"})),
        )
        .await;
    assert_eq!((status, reply), (200, json!({"status": "updated"})));
    let text = resolve(w, &w_token).await;
    assert!(!text.contains("G9") && text.contains("G1"), "{text}");

    let (status, all) = s.call("GET", "/instructions", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 5);
    let g9_row = all.iter().find(|i| i["id"] == g9.as_str()).unwrap();
    assert_eq!(
        (g9_row["scope"].as_str(), g9_row["enabled"].as_bool()),
        (Some("global"), Some(false))
    );
    let (_, globals) = s
        .call("GET", "/instructions?scope=global", Some(ADMIN), None)
        .await;
    assert_eq!(globals.as_array().unwrap().len(), 2);
    let (_, for_w) = s
        .call(
            "GET",
            &format!("/instructions?workspace_id={w}"),
            Some(ADMIN),
            None,
        )
        .await;
    let titles: Vec<&str> = for_w
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["G1", "T", "W"]);
    let (status, _) = s.call("GET", "/instructions", Some(&w_token), None).await;
    assert_eq!(status, 401, "admin only");

    // Validation: the spec's messages, nothing written.
    let cases = [
        (
            json!({"scope": "global", "title": "t"}),
            "scope, title, and content are required",
        ),
        (
            json!({"scope": "org", "title": "t", "content": "c"}),
            "scope must be global, team, or workspace",
        ),
        (
            json!({"scope": "workspace", "title": "t", "content": "c"}),
            "scope_target required for workspace scope",
        ),
        (
            json!({"scope": "team", "title": "t", "content": "c"}),
            "scope_target required for team scope",
        ),
        (
            json!({"scope": "team", "scope_target": "x", "title": "t", "content": "c"}),
            "scope_target must be a workspace ID",
        ),
        (
            json!({"scope": "global", "title": "t", "content": "c".repeat(8193)}),
            "content exceeds 8192 chars",
        ),
        (
            json!({"scope": "global", "title": "t".repeat(201), "content": "c"}),
            "title exceeds 200 chars",
        ),
    ];
    for (body, message) in cases {
        let (status, reply) = s
            .call("POST", "/instructions", Some(ADMIN), Some(body.clone()))
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(message)),
            "{body}"
        );
    }
    let (status, reply) = s.call_raw("PUT", &path, Some(ADMIN), "[not json").await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid request"))
    );
    let (status, reply) = s
        .call(
            "PUT",
            &path,
            Some(ADMIN),
            Some(json!({"title": "t".repeat(201)})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("title exceeds 200 chars"))
    );
    let (_, all) = s.call("GET", "/instructions", Some(ADMIN), None).await;
    assert_eq!(all.as_array().unwrap().len(), 5);

    let (status, reply) = s.call("DELETE", &path, Some(ADMIN), None).await;
    assert_eq!((status, reply), (200, json!({"status": "deleted"})));
    for (method, body) in [("DELETE", None), ("PUT", Some(json!({"priority": 1})))] {
        let (status, reply) = s.call(method, &path, Some(ADMIN), body.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (404, Some("instruction not found")),
            "{method}"
        );
        let (status, _) = s
            .call(method, "/instructions/not-a-uuid", Some(ADMIN), body)
            .await;
        assert_eq!(status, 404);
    }
    // Nothing applies: an empty text.
    let (fresh, fresh_token) = s.provisioned("fresh", None).await;
    let (_, rows) = s
        .call("GET", "/instructions?scope=global", Some(ADMIN), None)
        .await;
    for row in rows.as_array().unwrap() {
        let path = format!("/instructions/{}", row["id"].as_str().unwrap());
        assert_eq!(s.call("DELETE", &path, Some(ADMIN), None).await.0, 200);
    }
    assert_eq!(resolve(fresh, &fresh_token).await, "");
}
