//! Many workspaces and images on the real engine: a team's expand and a bulk creation start
//! every workspace through the lifecycle (and a cascade delete stops each once), and the image
//! refresh answers without the daemon's text (a backend without images has none).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::{
    BackendKind, ProvisionError, ProvisionRequest, Provisioner, Running, SecretValue, Started,
};
use molecule_store::testing::TestStore;
use serde_json::json;

use super::{Cleanup, SERIAL, container, docker, gateway, online, server};
use crate::common::{TestServer, assert_error, assert_json, assert_status, id_of};

/// A decorator that counts the calls it forwards to the real backend.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Provisioner>,
    starts: AtomicUsize,
    stops: AtomicUsize,
}

#[async_trait]
impl Provisioner for Counting {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn delivers_credentials(&self) -> bool {
        self.inner.delivers_credentials()
    }
    async fn start(&self, request: &ProvisionRequest) -> Result<Started, ProvisionError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.inner.start(request).await
    }
    async fn stop(&self, id: WorkspaceId, instance: Option<&str>) -> Result<(), ProvisionError> {
        self.stops.fetch_add(1, Ordering::SeqCst);
        self.inner.stop(id, instance).await
    }
    async fn running(&self, id: WorkspaceId, instance: Option<&str>) -> Running {
        self.inner.running(id, instance).await
    }
    async fn remove_volume(&self, id: WorkspaceId) -> Result<(), ProvisionError> {
        self.inner.remove_volume(id).await
    }
    async fn write_auth_token(
        &self,
        id: WorkspaceId,
        token: &SecretValue,
    ) -> Result<(), ProvisionError> {
        self.inner.write_auth_token(id, token).await
    }
    async fn read_file(&self, id: WorkspaceId, path: &str) -> Result<Vec<u8>, ProvisionError> {
        self.inner.read_file(id, path).await
    }
    async fn managed_workspaces(&self) -> Result<Vec<WorkspaceId>, ProvisionError> {
        self.inner.managed_workspaces().await
    }
    async fn console_output(
        &self,
        id: WorkspaceId,
        instance: Option<&str>,
    ) -> Result<String, ProvisionError> {
        self.inner.console_output(id, instance).await
    }
}

#[tokio::test]
async fn team_expand_and_bulk_creation_start_through_the_lifecycle() {
    let db = TestStore::sqlite().await;
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let counting = Arc::new(Counting {
        inner: docker().await,
        starts: AtomicUsize::new(0),
        stops: AtomicUsize::new(0),
    });
    let configs = tempfile::tempdir().unwrap();
    let team = configs.path().join("e2e-lead");
    std::fs::create_dir_all(&team).unwrap();
    std::fs::write(
        team.join("config.yaml"),
        "name: e2e-lead\nsub_workspaces:\n  - name: Reader\n  - name: Writer\n",
    )
    .unwrap();
    let dir = configs.path().to_path_buf();
    let s = TestServer::start_reachable(db, counting.clone(), gateway(), move |st| {
        st.with_configs_dir(Some(dir))
    })
    .await;

    let lead = s.create(json!({"name": "e2e-lead", "tier": 2})).await;
    cleanup.add(lead);
    online(&s, lead).await;
    assert_eq!(counting.starts.load(Ordering::SeqCst), 1);

    // Team expand: every child is started by the lifecycle, and runs.
    let expand = s.admin("POST", &format!("/workspaces/{lead}/expand"), None);
    let reply = assert_status(expand.await, 200);
    let children: Vec<WorkspaceId> = reply["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(children.len(), 2);
    for child in &children {
        cleanup.add(*child);
        online(&s, *child).await;
        assert!(container(*child).is_some_and(|(_, running)| running));
    }
    assert_eq!(
        counting.starts.load(Ordering::SeqCst),
        3,
        "lead + 2 children"
    );

    // Bulk creation (several creates at once): each one start through the lifecycle.
    let creates = (0..3).map(|i| {
        let s = &s;
        async move {
            s.create(json!({"name": format!("e2e-bulk-{i}"), "tier": 2}))
                .await
        }
    });
    let bulk: Vec<WorkspaceId> = futures_util::future::join_all(creates).await;
    for id in &bulk {
        cleanup.add(*id);
    }
    for id in &bulk {
        online(&s, *id).await;
    }
    assert_eq!(counting.starts.load(Ordering::SeqCst), 6);

    // Cascade delete: one stop per workspace, every container gone.
    let delete = s.admin("DELETE", &format!("/workspaces/{lead}?confirm=true"), None);
    assert_eq!(assert_status(delete.await, 200)["cascade_deleted"], 2);
    assert_eq!(counting.stops.load(Ordering::SeqCst), 3);
    for id in children.iter().chain(std::iter::once(&lead)) {
        assert!(container(*id).is_none());
    }
    for id in &bulk {
        assert_status(
            s.admin("DELETE", &format!("/workspaces/{id}"), None).await,
            200,
        );
    }
    assert_eq!(
        counting.starts.load(Ordering::SeqCst),
        6,
        "no start besides the lifecycle's"
    );
}

#[tokio::test]
async fn an_image_refresh_answers_without_daemon_text() {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let backend = docker().await;
    let s = server(TestStore::sqlite().await, backend.clone()).await;
    let id = s.create(json!({"name": "e2e-refresh", "tier": 2})).await;
    cleanup.add(id);
    online(&s, id).await;
    let (before, _) = container(id).unwrap();

    // No registry is reachable: the local-only image cannot be pulled. The answer has the
    // spec's shape, names the runtime, and carries none of the daemon's text; nothing was
    // recreated, the workspace keeps running.
    let path = "/admin/workspace-images/refresh?runtime=langgraph";
    assert_json(
        s.admin("POST", path, None).await,
        200,
        json!({"pulled": [], "failed": ["langgraph"], "recreated": []}),
    );
    let all = s.admin("POST", "/admin/workspace-images/refresh?recreate=no", None);
    let all = assert_status(all.await, 200);
    assert_eq!(all["failed"].as_array().unwrap().len(), 9, "{all}");
    let text = all.to_string().to_lowercase();
    for leak in ["registry", "dial", "lookup", "daemon", "denied", "error"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert_eq!(container(id), Some((before, true)));
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);

    // An unknown runtime is refused with the known ones; only admin may refresh.
    let (status, reply) = s
        .admin(
            "POST",
            "/admin/workspace-images/refresh?runtime=cobol",
            None,
        )
        .await;
    assert_error((status, reply.clone()), 400, "unknown runtime: cobol");
    let known = reply["known_runtimes"].as_array().unwrap();
    assert_eq!(known.len(), 9);
    assert_eq!(known[0], "autogen", "alphabetical");
    assert!(!known.contains(&json!("external")));
    let (status, _) = s.call("POST", path, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = s.call("POST", path, Some("not-the-admin"), None).await;
    assert_eq!(status, 401);

    assert_status(
        s.admin("DELETE", &format!("/workspaces/{id}"), None).await,
        200,
    );
}

/// A backend without images (the recording double here; EC2 alike) has no image refresh.
#[tokio::test]
async fn no_image_refresh_without_the_docker_backend() {
    let s = TestServer::strict(TestStore::sqlite().await).await;
    let refresh = s.admin("POST", "/admin/workspace-images/refresh", None);
    assert_status(refresh.await, 404);
    assert_eq!(s.backend().start_count(), 0);
}
