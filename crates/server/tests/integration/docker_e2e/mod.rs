//! The whole path on the machine's real Docker engine: a real server (in process, strict
//! mode) with the real Docker backend, the echo-agent image `cargo xtask image` builds, and
//! agents in containers that register with the server over the Docker network's gateway.
//! No Docker, or no image, fails these tests (never skips them). Here: the support they share.
//!
//! The tests of this module run one at a time (the nextest test group `docker-engine`, which
//! `.config/nextest.toml` gives every test named `docker_e2e::…`): the orphan sweep lists every
//! managed container of the daemon, so a concurrent test's containers (whose rows live in
//! another test database) would look like orphans.

mod compose;
mod containers;
mod deployed;
mod files;
mod image;
mod lifecycle;
mod org;
mod templates;

use std::net::IpAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::Provisioner;
use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner, PullPolicy};
use molecule_provisioner_api::names::{config_volume_name, container_name};
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{TestServer, assert_status};

const IMAGE: &str = "molecule-echo-agent:dev";
/// The network of these tests (created here when missing, so its gateway is known).
const NETWORK: &str = "molecule-rs-e2e-net";

/// One test at a time also when one process runs several (`cargo test`).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// Waits until the workspace is online (its agent in the container registered).
async fn online(s: &TestServer, id: WorkspaceId) -> molecule_store::Workspace {
    s.wait_row(id, "online", |w| w.status == WorkspaceStatus::Online)
        .await
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
    let reply = s.admin("POST", &format!("/workspaces/{id}/a2a"), Some(body));
    let reply = assert_status(reply.await, 200);
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
