//! An org template imported on the real Docker engine: a parent and a child created through
//! the lifecycle service, each container started with its generated `config.yaml` and prompt
//! files already in `/configs`, both agents online and answering, the child under the parent.

use molecule_domain::WorkspaceId;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use super::{Cleanup, SERIAL, docker, docker_cli, echo, gateway, online};
use crate::common::{TestServer, assert_status};
use crate::org::{with_dirs, write_tree};

on_both_backends!(an_org_template_imports_into_real_containers);

const ORG: &str = r#"
name: E2E Org
defaults:
  runtime: langgraph
workspaces:
  - name: Org Lead
    role: lead
    files_dir: lead
    initial_prompt_file: initial-prompt.md
    children: !include team.yaml
"#;

const TEAM: &str = r#"
- name: Org Worker
  system_prompt: "You do the work."
"#;

/// The text of `path` in the workspace's container.
fn cat(id: WorkspaceId, path: &str) -> String {
    let name = molecule_provisioner_api::names::container_name(id);
    let out = docker_cli(&["exec", name.as_str(), "cat", path]);
    assert!(out.status.success(), "no {path} in {id}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn an_org_template_imports_into_real_containers(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        &dir.path().join("org-templates/e2e"),
        &[
            ("org.yaml", ORG),
            ("team.yaml", TEAM),
            ("lead/initial-prompt.md", "Lead the team."),
            ("lead/notes.md", "lead notes"),
        ],
    );
    let s = TestServer::start_reachable(db, docker().await, gateway(), with_dirs(dir.path(), None))
        .await;
    let reply = assert_status(
        s.admin("POST", "/org/import", Some(json!({"dir": "e2e"})))
            .await,
        201,
    );
    assert_eq!(reply["count"], 2, "{reply}");
    let id = |i: usize| -> WorkspaceId {
        reply["workspaces"][i]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (lead, worker) = (id(0), id(1));
    cleanup.add(lead);
    cleanup.add(worker);
    assert_eq!(online(&s, lead).await.parent_id, None);
    assert_eq!(online(&s, worker).await.parent_id, Some(lead));
    // The generated files were in /configs before the agents started.
    let config: yaml_serde::Value =
        yaml_serde::from_str(&cat(lead, "/configs/config.yaml")).unwrap();
    assert_eq!(config["name"].as_str(), Some("Org Lead"));
    assert_eq!(config["initial_prompt"].as_str(), Some("Lead the team.\n"));
    assert_eq!(cat(lead, "/configs/notes.md"), "lead notes");
    assert_eq!(cat(worker, "/configs/system-prompt.md"), "You do the work.");
    // Both agents answer through the server.
    assert!(echo(&s, lead, "hello lead").await.contains("hello lead"));
    assert!(
        echo(&s, worker, "hello worker")
            .await
            .contains("hello worker")
    );
}
