//! The server image `molecule-server:dev` (`cargo xtask image server`) run for real with
//! `docker run`, the way the README's compose file runs it: the Docker socket mounted (the
//! server a non-root user in the socket's group), on the network its Docker backend attaches
//! workspaces to. It turns healthy by its own `HEALTHCHECK`, keeps its data in the `/data`
//! volume, and a workspace created through it gets a container from the echo image whose agent
//! calls back by the server's container name and comes online; an A2A message through the
//! server reaches the agent at `http://ws-<id12>:8000` (the server's own loopback is not the
//! host's).

use std::os::unix::fs::MetadataExt;

use molecule_domain::WorkspaceId;

use super::deployed::{ADMIN, Network, SERVER_IMAGE, inspect, require_images, serves_a_workspace};
use super::{Cleanup, IMAGE, SERIAL, docker_cli};

/// The server container and its network, removed on drop (even when the test fails), the
/// server before the workspaces it started.
struct Deployment {
    name: String,
    network: String,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = docker_cli(&["logs", "--tail", "40", &self.name]);
            eprintln!(
                "server log:\n{}",
                String::from_utf8_lossy(&logs.stderr) + String::from_utf8_lossy(&logs.stdout)
            );
        }
        let _ = docker_cli(&["rm", "-f", "-v", &self.name]);
    }
}

/// Starts the server image with the socket mounted on `network`; returns it and its base URL
/// on the host.
fn deploy(network: &str) -> (Deployment, String) {
    let deployment = Deployment {
        name: format!("molecule-rs-image-e2e-{}", WorkspaceId::new().short()),
        network: network.to_owned(),
    };
    let socket_group = std::fs::metadata("/var/run/docker.sock")
        .expect("the Docker socket")
        .gid()
        .to_string();
    let platform = format!("PLATFORM_URL=http://{}:8080", deployment.name);
    let network_env = format!("MOLECULE_DOCKER_NETWORK={}", deployment.network);
    let admin = format!("ADMIN_TOKEN={ADMIN}");
    let workspace_image = format!("MOLECULE_WORKSPACE_IMAGE={IMAGE}");
    let run = docker_cli(&[
        "run",
        "-d",
        "--name",
        &deployment.name,
        "--network",
        &deployment.network,
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "--group-add",
        &socket_group,
        "-p",
        "127.0.0.1::8080",
        "-e",
        &admin,
        "-e",
        "MOLECULE_BACKEND=docker",
        "-e",
        &network_env,
        "-e",
        &platform,
        "-e",
        &workspace_image,
        SERVER_IMAGE,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let port = docker_cli(&["port", &deployment.name, "8080/tcp"]);
    let published = String::from_utf8_lossy(&port.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(published.starts_with("127.0.0.1:"), "{published:?}");
    (deployment, format!("http://{published}"))
}

#[tokio::test]
async fn the_server_image_runs_workspaces_on_the_docker_backend() {
    let _serial = SERIAL.lock().await;
    require_images();
    let network = Network(format!(
        "molecule-rs-image-e2e-net-{}",
        WorkspaceId::new().short()
    ));
    let made = docker_cli(&["network", "create", &network.0]);
    assert!(made.status.success(), "{made:?}");
    let started = Cleanup::default();
    let (deployment, base) = deploy(&network.0);

    // Not root, data in the volume.
    assert_eq!(inspect(SERVER_IMAGE, "{{.Config.User}}"), "65532:65532");
    assert_eq!(
        inspect(
            &deployment.name,
            "{{range .Mounts}}{{if eq .Destination \"/data\"}}{{.Type}}{{end}}{{end}}"
        ),
        "volume"
    );
    serves_a_workspace(&base, &deployment.name, &network.0, &started).await;
}
