//! `GET /bundles/export/:id` and `POST /bundles/import`.

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::with_dirs;
use crate::common::{Options, TestServer, assert_error, assert_status};

molecule_store::on_both_backends!(
    export_then_import_recreates_the_subtree_without_secrets,
    bad_bundles_are_refused_and_nothing_is_created,
);

async fn export_then_import_recreates_the_subtree_without_secrets(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let root = s
        .create(
            json!({"name": "Root", "role": "boss", "tier": 3, "runtime": "hermes",
            "secrets": {"API_KEY": "sk-very-secret"}}),
        )
        .await;
    let child = s
        .create(json!({"name": "Child", "parent_id": root.to_string(), "runtime": "hermes"}))
        .await;
    let b = s.backend();
    b.wait_for(|b| b.started(root) == 1 && b.started(child) == 1)
        .await;
    b.put_file(
        root,
        "/configs/config.yaml",
        "name: Root\nruntime: hermes\n",
    );
    b.put_file(root, "/configs/system-prompt.md", "You lead.");
    b.put_file(
        root,
        "/configs/skills/triage/SKILL.md",
        "---\nname: triage\n---\n# Triage\nSorts issues.\n",
    );
    b.put_file(root, "/configs/skills/triage/tool.py", "print(1)");
    b.put_file(root, "/configs/.auth_token", "token-value");
    b.put_file(root, "/configs/.env", "API_KEY=sk-very-secret");
    b.put_file(child, "/configs/system-prompt.md", "You follow.");
    let bundle = assert_status(
        s.admin("GET", &format!("/bundles/export/{root}"), None)
            .await,
        200,
    );
    let text = bundle.to_string();
    assert!(
        !text.contains("sk-very-secret") && !text.contains("token-value"),
        "{text}"
    );
    assert_eq!(bundle["schema"], "1.0");
    assert_eq!(bundle["description"], "boss");
    assert_eq!(bundle["system_prompt"], "You lead.");
    assert_eq!(bundle["skills"][0]["id"], "triage");
    assert_eq!(bundle["skills"][0]["description"], "Sorts issues.");
    assert_eq!(bundle["sub_workspaces"][0]["name"], "Child");

    let reply = assert_status(
        s.admin("POST", "/bundles/import", Some(bundle.clone()))
            .await,
        201,
    );
    let new_root: WorkspaceId = reply["workspace_id"].as_str().unwrap().parse().unwrap();
    let new_child: WorkspaceId = reply["children"][0]["workspace_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_root, root);
    assert_eq!(reply["status"], "provisioning");
    let row = s.row(new_root).await;
    assert_eq!(
        (
            row.name.as_str(),
            row.role.as_deref(),
            row.tier,
            row.runtime.as_str()
        ),
        ("Root", Some("boss"), 3, "hermes")
    );
    assert_eq!(
        row.source_bundle_id.as_deref(),
        Some(root.to_string().as_str())
    );
    assert_eq!(s.row(new_child).await.parent_id, Some(new_root));
    b.wait_for(|b| b.started(new_root) == 1 && b.started(new_child) == 1)
        .await;
    assert_eq!(
        b.file(new_root, "/configs/system-prompt.md").as_deref(),
        Some("You lead.")
    );
    assert_eq!(
        b.file(new_root, "/configs/skills/triage/tool.py")
            .as_deref(),
        Some("print(1)")
    );
    assert_eq!(
        b.file(new_child, "/configs/system-prompt.md").as_deref(),
        Some("You follow.")
    );
    assert_eq!(b.file(new_root, "/configs/.env"), None);
    let secrets = s
        .state
        .store
        .secrets()
        .list_workspace(new_root)
        .await
        .unwrap();
    assert!(secrets.is_empty(), "secrets travelled with the bundle");
    // The same bundle imports again, with fresh ids.
    let again = assert_status(s.admin("POST", "/bundles/import", Some(bundle)).await, 201);
    assert_ne!(again["workspace_id"], reply["workspace_id"]);
    assert_error(
        s.admin(
            "GET",
            &format!("/bundles/export/{}", WorkspaceId::new()),
            None,
        )
        .await,
        404,
        "bundle not found",
    );
    assert_error(
        s.admin("GET", "/bundles/export/not-a-uuid", None).await,
        404,
        "bundle not found",
    );
}

async fn bad_bundles_are_refused_and_nothing_is_created(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let good = json!({"schema": "1.0", "name": "Ok", "sub_workspaces": [{"schema": "1.0", "name": "Kid"}]});
    let mut cases: Vec<(Value, &str)> = vec![
        (json!({}), "invalid bundle"),
        (
            json!({"schema": "2.0", "name": "x"}),
            "invalid bundle: unsupported schema \"2.0\" (want \"1.0\")",
        ),
        (
            json!({"schema": "1.0", "name": ""}),
            "invalid bundle: name is required",
        ),
        (
            json!({"schema": "1.0", "name": "x", "skills": [{"id": "../x"}]}),
            "invalid bundle: bad skill id \"../x\"",
        ),
        (
            json!({"schema": "1.0", "name": "x", "prompts": {"../../etc/passwd": "x"}}),
            "invalid bundle: bad file path \"../../etc/passwd\"",
        ),
        (
            json!({"schema": "1.0", "name": "x", "tier": 9}),
            "invalid bundle: tier must be between 1 and 4",
        ),
        (
            json!({"schema": "1.0", "name": "x", "skills": "nope"}),
            "invalid bundle",
        ),
        (json!([1, 2]), "invalid bundle"),
    ];
    // A bad grandchild refuses the whole bundle, parents included.
    let mut deep = good.clone();
    deep["sub_workspaces"][0]["sub_workspaces"] =
        json!([{"schema": "1.0", "name": "x", "skills": [{"id": "a", "files": {"../x": "x"}}]}]);
    cases.push((deep, "invalid bundle: bad file path \"skills/a/../x\""));
    for (body, message) in cases {
        assert_error(
            s.admin("POST", "/bundles/import", Some(body)).await,
            400,
            message,
        );
    }
    assert!(s.state.store.workspaces().list().await.unwrap().is_empty());
    assert_eq!(s.backend().start_count(), 0);
}
