//! The README's `docker-compose.yml` run for real with `docker-compose up`: the server image
//! on SQLite with the Docker socket, on the network compose creates, reached on the host port
//! the file publishes. Each run is its own compose project with its own network and port
//! (`MOLECULE_NETWORK`, `MOLECULE_PORT`), taken down with its volumes on drop. Like every test
//! of this module it runs alone on the engine (the server's orphan sweep).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use molecule_domain::WorkspaceId;

use super::deployed::{ADMIN, Network, inspect, require_images, serves_a_workspace};
use super::{Cleanup, IMAGE, SERIAL};

/// One compose project of `docker-compose.yml`, with the settings an operator's `.env` gives.
struct Project {
    name: String,
    network: String,
    port: u16,
}

impl Project {
    fn file() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker-compose.yml")
    }

    /// `docker-compose -p <project> -f docker-compose.yml <args>` with the project's settings.
    fn compose(&self, args: &[&str]) -> Output {
        let socket_group = std::fs::metadata("/var/run/docker.sock")
            .expect("the Docker socket")
            .gid()
            .to_string();
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(Self::file())
            .args(args)
            .env("ADMIN_TOKEN", ADMIN)
            .env("DOCKER_GID", socket_group)
            .env("MOLECULE_NETWORK", &self.network)
            .env("MOLECULE_BIND", "127.0.0.1")
            .env("MOLECULE_PORT", self.port.to_string())
            .env("MOLECULE_WORKSPACE_IMAGE", IMAGE)
            .output()
            .unwrap_or_else(|e| panic!("docker-compose (v1) cannot run: {e}"))
    }

    /// The server's container id.
    fn server(&self) -> String {
        let out = self.compose(&["ps", "-q", "server"]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!id.is_empty(), "no server container: {out:?}");
        id
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.compose(&["logs", "--tail", "40", "server"]);
            eprintln!("server log:\n{}", String::from_utf8_lossy(&logs.stdout));
        }
        let _ = self.compose(&["down", "-v", "--remove-orphans"]);
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[tokio::test]
async fn the_sqlite_compose_file_runs_workspaces_on_the_docker_backend() {
    let _serial = SERIAL.lock().await;
    require_images();
    let suffix = WorkspaceId::new().short();
    let network = Network(format!("molecule-rs-compose-e2e-net-{suffix}"));
    let started = Cleanup::default();
    let project = Project {
        name: format!("molecule-rs-compose-e2e-{suffix}"),
        network: network.0.clone(),
        port: free_port(),
    };
    let up = project.compose(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let server = project.server();
    // The data volume is the project's, the server not root.
    let data = inspect(
        &server,
        "{{range .Mounts}}{{if eq .Destination \"/data\"}}{{.Name}}{{end}}{{end}}",
    );
    assert_eq!(data, format!("{}_molecule-data", project.name));
    assert_eq!(inspect(&server, "{{.Config.User}}"), "65532:65532");

    let base = format!("http://127.0.0.1:{}", project.port);
    serves_a_workspace(&base, &server, &project.network, &started).await;
}
