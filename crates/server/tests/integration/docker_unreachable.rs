//! An unreachable Docker daemon makes the running check *unknown*: the health sweep marks no
//! workspace offline and restarts none (the real Docker backend, pointed at a dead socket).

use std::sync::Arc;

use molecule_domain::WorkspaceStatus;
use molecule_provisioner_api::Provisioner;
use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner};
use molecule_server::AppState;
use molecule_server::Security;
use molecule_store::NewWorkspace;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;

on_both_backends!(an_unreachable_daemon_changes_no_workspace);

async fn an_unreachable_daemon_changes_no_workspace(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("docker.sock");
    let backend: Arc<dyn Provisioner> = Arc::new(DockerProvisioner::with_socket(
        dead.to_str().unwrap(),
        DockerConfig::default(),
    ));
    let state = AppState::with_backend(
        (*db).clone(),
        Security::strict("admin".into(), false),
        Some(backend),
        "http://platform.test".into(),
    );
    let ws = db
        .workspaces()
        .create(NewWorkspace::named("steady"))
        .await
        .unwrap()
        .id;
    db.workspaces()
        .transition(ws, WorkspaceStatus::Online, None)
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(state.lifecycle.sweep_health().await.unwrap(), 0);
    }
    let now = db.workspaces().get(ws).await.unwrap().unwrap();
    assert_eq!(
        now.status,
        WorkspaceStatus::Online,
        "unknown is never offline"
    );
    assert_eq!(state.lifecycle.sweep_orphans().await.unwrap(), 0);
}
