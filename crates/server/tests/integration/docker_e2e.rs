//! The whole path on the machine's real Docker engine: a real server (in process, strict
//! mode) with the real Docker backend, the echo-agent image `cargo xtask image` builds, and
//! agents in containers that register with the server over the Docker network's gateway.
//! No Docker, or no image, fails these tests (never skips them).
//!
//! The tests of this file run one at a time: the orphan sweep lists every managed container
//! of the daemon, so a concurrent test's containers (whose rows live in another test database)
//! would look like orphans.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{ADMIN, TestServer};
use async_trait::async_trait;
use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner, PullPolicy};
use molecule_provisioner_api::names::{config_volume_name, container_name};
use molecule_provisioner_api::{
    BackendKind, ProvisionError, ProvisionRequest, Provisioner, Running, SecretValue, Started,
};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

const IMAGE: &str = "molecule-echo-agent:dev";
/// The network of these tests (created here when missing, so its gateway is known).
const NETWORK: &str = "molecule-rs-e2e-net";
/// A bound on each wait (containers start in about a second here), not a synchronisation.
const WITHIN: Duration = Duration::from_secs(60);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

on_both_backends!(a_workspace_lives_in_a_real_container);

on_both_backends!(a_failed_docker_workspace_cannot_be_taken_over);

#[tokio::test]
async fn a_killed_container_comes_back_online() {
    killed_container_comes_back(TestStore::sqlite().await).await;
}

#[tokio::test]
async fn a_container_left_behind_is_removed_by_the_orphan_sweep() {
    orphan_is_removed(TestStore::sqlite().await).await;
}

#[tokio::test]
async fn team_expand_and_bulk_creation_start_through_the_lifecycle() {
    expand_and_bulk_go_through_the_lifecycle(TestStore::sqlite().await).await;
}

// ---------------------------------------------------------------------------------------
// Support

fn docker_cli(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the docker CLI cannot run (CI={}): {e}",
                molecule_testkit::in_ci()
            )
        })
}

/// The gateway address of the test network (created when missing). Fails when Docker or the
/// image is missing.
fn gateway() -> IpAddr {
    let info = docker_cli(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(
        info.status.success(),
        "the image {IMAGE} is missing or no Docker daemon answers (CI={}): build it with \
         `cargo xtask image`: {}",
        molecule_testkit::in_ci(),
        String::from_utf8_lossy(&info.stderr)
    );
    if !docker_cli(&["network", "inspect", NETWORK])
        .status
        .success()
    {
        let made = docker_cli(&["network", "create", "--driver", "bridge", NETWORK]);
        // A concurrent creation is fine: the inspect below decides.
        let _ = made;
    }
    let out = docker_cli(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
        NETWORK,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|g| g.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4))
        .expect("the test network has an IPv4 gateway")
}

fn config() -> DockerConfig {
    DockerConfig {
        image_override: Some(IMAGE.to_owned()),
        pull_policy: PullPolicy::Never,
        host_access: false,
        network: NETWORK.to_owned(),
        // Docker must not bring a killed container back by itself: the sweeps do.
        restart_policy: "no".to_owned(),
        ..DockerConfig::default()
    }
}

/// Removes the containers and volumes of the workspaces a test made, even when it fails.
#[derive(Default)]
struct Cleanup(Mutex<Vec<WorkspaceId>>);

impl Cleanup {
    fn add(&self, id: WorkspaceId) {
        self.0.lock().unwrap().push(id);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in self.0.lock().unwrap().iter() {
            let _ = docker_cli(&["rm", "-f", &container_name(*id)]);
            let _ = docker_cli(&[
                "volume",
                "rm",
                "-f",
                &config_volume_name(*id),
                &format!("ws-{id}-workspace"),
            ]);
        }
    }
}

/// The container's id and whether it runs, or `None` when there is no container.
fn container(id: WorkspaceId) -> Option<(String, bool)> {
    let out = docker_cli(&[
        "inspect",
        "--format",
        "{{.Id}} {{.State.Running}}",
        &container_name(id),
    ]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    Some((parts.next()?.to_owned(), parts.next()? == "true"))
}

fn volume_exists(name: &str) -> bool {
    docker_cli(&["volume", "inspect", name]).status.success()
}

/// Polls the stored workspace until `done` holds (bounded by [`WITHIN`]).
async fn wait_row(
    s: &TestServer,
    id: WorkspaceId,
    what: &str,
    done: impl Fn(&molecule_store::Workspace) -> bool,
) -> molecule_store::Workspace {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
        if done(&ws) {
            return ws;
        }
        if tokio::time::Instant::now() > deadline {
            let (_, logs) = s
                .call(
                    "GET",
                    &format!("/workspaces/{id}/console"),
                    Some(ADMIN),
                    None,
                )
                .await;
            panic!("{what}: not reached in time: {ws:?}\nconsole: {logs}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn online(s: &TestServer, id: WorkspaceId) -> molecule_store::Workspace {
    wait_row(s, id, "online", |w| w.status == WorkspaceStatus::Online).await
}

/// An A2A `message/send` through the server; returns the echoed text.
async fn echo(s: &TestServer, id: WorkspaceId, text: &str) -> String {
    let body = json!({
        "jsonrpc": "2.0",
        "id": "1",
        "method": "message/send",
        "params": {"message": {"role": "user", "messageId": WorkspaceId::new().to_string(),
                               "parts": [{"kind": "text", "text": text}]}},
    });
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/a2a"),
            Some(ADMIN),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let parts = reply["result"]["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    parts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

async fn server(db: TestStore, backend: Arc<dyn Provisioner>) -> TestServer {
    TestServer::start_reachable(db, backend, gateway(), |s| s).await
}

async fn docker() -> Arc<DockerProvisioner> {
    Arc::new(
        DockerProvisioner::connect(config())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no Docker daemon answers (CI={}): {e}",
                    molecule_testkit::in_ci()
                )
            }),
    )
}

// ---------------------------------------------------------------------------------------
// Tests

/// Provisioning that fails before the agent's token reaches its config volume leaves a
/// workspace nobody may register without a credential (the attack of issue 11: an
/// unauthenticated register of such a workspace used to hand out its token and secrets).
async fn a_failed_docker_workspace_cannot_be_taken_over(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    // A global secret sealed with another key (a database moved without its key): every
    // provision fails at the secrets, before any token is issued or written.
    (*db)
        .clone()
        .with_secret_key(Some(molecule_store::SecretKey::generate().unwrap()))
        .secrets()
        .set_global("OPENAI_API_KEY", "sealed-with-another-key")
        .await
        .unwrap();
    let s = server(db, docker().await).await;
    let id = s
        .create(json!({"name": "doomed", "runtime": "langgraph"}))
        .await;
    cleanup.add(id);
    let ws = wait_row(&s, id, "failed", |w| w.status == WorkspaceStatus::Failed).await;
    assert!(container(id).is_none(), "nothing was started");
    assert_eq!(s.state.store.tokens().count_live(id).await.unwrap(), 0);

    let takeover =
        json!({"id": id, "url": "http://93.184.216.34:8000", "agent_card": {"name": "x"}});
    for bearer in [None, Some("x".repeat(43))] {
        let (status, reply) = s
            .call(
                "POST",
                "/registry/register",
                bearer.as_deref(),
                Some(takeover.clone()),
            )
            .await;
        assert_eq!(status, 401, "{bearer:?}: {reply}");
        assert!(reply.get("auth_token").is_none(), "{reply}");
        assert!(reply.get("platform_inbound_secret").is_none(), "{reply}");
    }
    let after = s.state.store.workspaces().get(id).await.unwrap().unwrap();
    assert_eq!(after.status, WorkspaceStatus::Failed);
    assert_eq!((after.url, after.agent_card), (ws.url, ws.agent_card));
    assert_eq!(s.state.store.tokens().count_live(id).await.unwrap(), 0);
}

async fn a_workspace_lives_in_a_real_container(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let backend = docker().await;
    let s = server(db, backend.clone()).await;

    // Create → a container of our image → the agent registers → online.
    let id = s
        .create(json!({"name": "e2e-echo", "runtime": "langgraph", "tier": 2}))
        .await;
    cleanup.add(id);
    let ws = online(&s, id).await;
    let url = ws.url.clone().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "the published loopback URL is kept: {url}"
    );
    let (first, running) = container(id).expect("a container");
    assert!(running);
    assert_eq!(backend.running(id, None).await, Running::Yes);

    // An A2A call through the server reaches the agent and comes back.
    assert!(
        echo(&s, id, "hello through the platform")
            .await
            .contains("hello through the platform")
    );

    // A file in the config volume, to see that restart keeps the volume.
    let marker = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(marker.path(), "kept").unwrap();
    let cp = docker_cli(&[
        "cp",
        marker.path().to_str().unwrap(),
        &format!("{}:/configs/marker", container_name(id)),
    ]);
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );

    // Restart → a new container, the config volume kept, online again.
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/restart"),
            Some(ADMIN),
            None,
        )
        .await;
    assert!(status < 300, "{status} {reply}");
    wait_row(&s, id, "online in a new container", |w| {
        w.status == WorkspaceStatus::Online
            && container(id).is_some_and(|(c, running)| c != first && running)
    })
    .await;
    assert_eq!(
        backend.read_file(id, "/configs/marker").await.unwrap(),
        b"kept"
    );
    assert!(
        echo(&s, id, "after restart")
            .await
            .contains("after restart")
    );

    // Pause → the container is gone, the volume stays.
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/pause"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Paused);
    assert!(container(id).is_none(), "paused: no container");
    assert!(volume_exists(&config_volume_name(id)));

    // Resume → back online, the volume still holding its file.
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/resume"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    online(&s, id).await;
    assert!(container(id).is_some_and(|(_, running)| running));
    assert_eq!(
        backend.read_file(id, "/configs/marker").await.unwrap(),
        b"kept"
    );
    assert!(echo(&s, id, "after resume").await.contains("after resume"));

    // Delete → the container and the volumes are gone.
    let (status, reply) = s
        .call("DELETE", &format!("/workspaces/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(container(id).is_none(), "deleted: no container");
    assert!(
        !volume_exists(&config_volume_name(id)),
        "deleted: no config volume"
    );
}

async fn killed_container_comes_back(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let backend = docker().await;
    let s = server(db, backend.clone()).await;
    let id = s.create(json!({"name": "e2e-killed", "tier": 2})).await;
    cleanup.add(id);
    online(&s, id).await;
    let (first, _) = container(id).unwrap();
    assert_eq!(
        s.state.lifecycle.sweep_health().await.unwrap(),
        0,
        "running: nothing to do"
    );

    // Killed by hand: the health sweep sees it not running → offline → auto-restart.
    let mut events = s.state.events.subscribe();
    let kill = docker_cli(&["kill", &container_name(id)]);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    assert_eq!(backend.running(id, None).await, Running::No);
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 1);
    let offline = tokio::time::timeout(WITHIN, async {
        loop {
            let e = events.recv().await.unwrap();
            if e.event == "WORKSPACE_OFFLINE" && e.workspace() == Some(id) {
                return;
            }
        }
    })
    .await;
    assert!(offline.is_ok(), "WORKSPACE_OFFLINE was broadcast");
    wait_row(&s, id, "online again in a new container", |w| {
        w.status == WorkspaceStatus::Online
            && container(id).is_some_and(|(c, running)| c != first && running)
    })
    .await;
    assert!(echo(&s, id, "back").await.contains("back"));

    let (status, reply) = s
        .call("DELETE", &format!("/workspaces/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{reply}");
}

fn request(id: WorkspaceId) -> ProvisionRequest {
    ProvisionRequest {
        workspace_id: id,
        name: "left-behind".into(),
        role: None,
        tier: molecule_domain::Tier::Standard,
        runtime: "langgraph".into(),
        parent_id: None,
        model: None,
        template: None,
        workspace_dir: None,
        workspace_access: molecule_domain::WorkspaceAccess::None,
        platform_url: "http://127.0.0.1:9".into(),
        env: Default::default(),
        auth_token: Some(SecretValue::new("tok")),
        platform_inbound_secret: None,
        bootstrap_token: None,
    }
}

async fn orphan_is_removed(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let backend = docker().await;
    let s = server(db, backend.clone()).await;
    // A live workspace, whose container must survive the sweep.
    let live = s.create(json!({"name": "e2e-live", "tier": 2})).await;
    cleanup.add(live);
    online(&s, live).await;
    // A container a crashed server left behind: managed, but no row knows it.
    let orphan = WorkspaceId::new();
    cleanup.add(orphan);
    backend.start(&request(orphan)).await.unwrap();
    assert!(container(orphan).is_some());
    assert!(volume_exists(&config_volume_name(orphan)));

    assert_eq!(s.state.lifecycle.sweep_orphans().await.unwrap(), 1);
    assert!(
        container(orphan).is_none(),
        "the orphan's container is removed"
    );
    assert!(
        !volume_exists(&config_volume_name(orphan)),
        "and its volume"
    );
    assert!(
        container(live).is_some_and(|(_, running)| running),
        "the live one stays"
    );
    assert_eq!(s.status_of(live).await, WorkspaceStatus::Online);

    // A removed workspace's container is an orphan too.
    s.state
        .store
        .workspaces()
        .remove_all(&[live])
        .await
        .unwrap();
    assert_eq!(s.state.lifecycle.sweep_orphans().await.unwrap(), 1);
    assert!(container(live).is_none());
}

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

async fn expand_and_bulk_go_through_the_lifecycle(db: TestStore) {
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
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{lead}/expand"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let children: Vec<WorkspaceId> = reply["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
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
    let (status, reply) = s
        .call(
            "DELETE",
            &format!("/workspaces/{lead}?confirm=true"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["cascade_deleted"], 2);
    assert_eq!(counting.stops.load(Ordering::SeqCst), 3);
    for id in children.iter().chain(std::iter::once(&lead)) {
        assert!(container(*id).is_none());
    }
    for id in &bulk {
        let (status, _) = s
            .call("DELETE", &format!("/workspaces/{id}"), Some(ADMIN), None)
            .await;
        assert_eq!(status, 200);
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
    let (status, reply) = s.call("POST", path, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"pulled": [], "failed": ["langgraph"], "recreated": []})
    );
    let (status, all) = s
        .call(
            "POST",
            "/admin/workspace-images/refresh?recreate=no",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["failed"].as_array().unwrap().len(), 9, "{all}");
    let text = all.to_string().to_lowercase();
    for leak in ["registry", "dial", "lookup", "daemon", "denied", "error"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert_eq!(container(id), Some((before, true)));
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);

    // An unknown runtime is refused with the known ones; only admin may refresh.
    let (status, reply) = s
        .call(
            "POST",
            "/admin/workspace-images/refresh?runtime=cobol",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "unknown runtime: cobol");
    let known = reply["known_runtimes"].as_array().unwrap();
    assert_eq!(known.len(), 9);
    assert_eq!(known[0], "autogen", "alphabetical");
    assert!(!known.contains(&json!("external")));
    let (status, _) = s.call("POST", path, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = s.call("POST", path, Some("not-the-admin"), None).await;
    assert_eq!(status, 401);

    let (status, reply) = s
        .call("DELETE", &format!("/workspaces/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{reply}");
}

/// A backend without images (the recording double here; EC2 alike) has no image refresh.
#[tokio::test]
async fn no_image_refresh_without_the_docker_backend() {
    let s = TestServer::start(
        TestStore::sqlite().await,
        crate::common::Options {
            backend: true,
            dev: false,
        },
    )
    .await;
    let (status, reply) = s
        .call("POST", "/admin/workspace-images/refresh", Some(ADMIN), None)
        .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(s.backend().start_count(), 0);
}
