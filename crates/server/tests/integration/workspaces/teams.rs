//! Trees of workspaces: a delete removes the whole subtree (stopping every member), collapse
//! removes the children's subtrees, and expand creates and provisions a template's team.

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{Options, TestServer, assert_error, assert_json, assert_status, id_of};

on_both_backends!(
    delete_removes_the_subtree_and_stops_every_member,
    collapse_removes_the_children_subtrees,
    expand_creates_and_provisions_the_template_team,
);

/// A root with a child and a grandchild.
async fn three_generations(s: &TestServer) -> [WorkspaceId; 3] {
    let root = s.create(json!({"name": "root"})).await;
    let child = s.create(json!({"name": "child", "parent_id": root})).await;
    let grandchild = s.create(json!({"name": "gc", "parent_id": child})).await;
    [root, child, grandchild]
}

async fn delete_removes_the_subtree_and_stops_every_member(db: TestStore) {
    let s = TestServer::strict(db).await;
    let [root, child, grandchild] = three_generations(&s).await;
    let token = s.state.store.tokens().issue(grandchild).await.unwrap();
    let path = format!("/workspaces/{root}");
    let reply = assert_status(s.admin("DELETE", &path, None).await, 409);
    assert_eq!(reply["status"], "confirmation_required");
    assert_eq!(reply["children_count"], 1);
    assert_eq!(
        s.status_of(child).await,
        WorkspaceStatus::Provisioning,
        "nothing removed"
    );

    let confirmed = s
        .admin("DELETE", &format!("{path}?confirm=true"), None)
        .await;
    assert_json(
        confirmed,
        200,
        json!({"status": "removed", "cascade_deleted": 2}),
    );
    for id in [root, child, grandchild] {
        assert_eq!(s.status_of(id).await, WorkspaceStatus::Removed);
        assert_eq!(s.backend().stopped(id), 1, "every member is stopped once");
    }
    assert!(
        !s.state
            .store
            .tokens()
            .validate(grandchild, &token.token)
            .await
            .unwrap()
    );
    let (status, _) = s.admin("DELETE", &path, None).await;
    assert_eq!(status, 404, "deleting again: not found");
    let unknown = format!("/workspaces/{}", WorkspaceId::new());
    assert_status(s.admin("DELETE", &unknown, None).await, 404);
    let invalid = s.admin("DELETE", "/workspaces/not-a-uuid", None).await;
    assert_error(invalid, 400, "invalid workspace ID");

    let lone = s.create(json!({"name": "lone"})).await;
    let purge = s.admin("DELETE", &format!("/workspaces/{lone}?purge=true"), None);
    assert_eq!(assert_status(purge.await, 200)["status"], "purged");
    assert!(
        s.state
            .store
            .workspaces()
            .get(lone)
            .await
            .unwrap()
            .is_none()
    );
}

async fn collapse_removes_the_children_subtrees(db: TestStore) {
    let s = TestServer::strict(db).await;
    let [root, child, grandchild] = three_generations(&s).await;
    let collapse = s.admin("POST", &format!("/workspaces/{root}/collapse"), None);
    assert_json(
        collapse.await,
        200,
        json!({"status": "collapsed", "removed": ["child"]}),
    );
    for id in [child, grandchild] {
        assert_eq!(s.status_of(id).await, WorkspaceStatus::Removed);
        assert_eq!(s.backend().stopped(id), 1);
    }
    assert_ne!(s.status_of(root).await, WorkspaceStatus::Removed);
    let unknown = format!("/workspaces/{}/collapse", WorkspaceId::new());
    assert_status(s.admin("POST", &unknown, None).await, 404);
}

async fn expand_creates_and_provisions_the_template_team(db: TestStore) {
    let configs = tempfile::tempdir().unwrap();
    let team = configs.path().join("research-lead");
    std::fs::create_dir_all(&team).unwrap();
    std::fs::write(
        team.join("config.yaml"),
        "name: Research Lead\nsub_workspaces:\n  - name: Reader\n    role: reads papers\n  - config: writer\n  - name: \"bad|name\"\n",
    )
    .unwrap();
    // The `config: writer` child starts from the writer template's files.
    std::fs::create_dir_all(configs.path().join("writer")).unwrap();
    std::fs::write(configs.path().join("writer/config.yaml"), "name: Writer\n").unwrap();
    std::fs::write(configs.path().join("writer/prompt.md"), "write").unwrap();
    let dir = configs.path().to_path_buf();
    let s = TestServer::start_configured(db, Options::STRICT, move |st| {
        st.with_configs_dir(Some(dir))
    })
    .await;
    let lead = s.create(json!({"name": "Research Lead", "tier": 2})).await;
    let expand = s.admin("POST", &format!("/workspaces/{lead}/expand"), None);
    let reply = assert_status(expand.await, 200);
    assert_eq!(reply["status"], "expanded");
    let children = reply["children"].as_array().unwrap();
    let names: Vec<_> = children
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Reader", "writer"], "invalid entries are skipped");
    for child in children {
        let id = id_of(child);
        // Started through the same lifecycle path as create, with the parent's tier.
        s.backend().wait_for(|b| b.started(id) == 1).await;
        let ws = s.row(id).await;
        assert_eq!((ws.parent_id, ws.tier), (Some(lead), 2));
        let request = s.backend().starts_of(id).remove(0);
        let files: Vec<(&str, &[u8])> = request
            .config_files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        if ws.name == "writer" {
            assert_eq!(
                files,
                [
                    ("config.yaml", &b"name: Writer\n"[..]),
                    ("prompt.md", b"write")
                ]
            );
        } else {
            // No template: the generated config.yaml with the child's name and role.
            assert_eq!(files.len(), 1);
            let text = String::from_utf8_lossy(files[0].1);
            assert!(
                text.starts_with("name: \"Reader\"\ndescription: \"reads papers\"\n"),
                "{text}"
            );
        }
    }
    let orphan = s.create(json!({"name": "No Template"})).await;
    let expand = s.admin("POST", &format!("/workspaces/{orphan}/expand"), None);
    assert_error(expand.await, 400, "no config found for workspace");
}
