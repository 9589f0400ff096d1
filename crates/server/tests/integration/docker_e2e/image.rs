//! The server image `molecule-server:dev` (`cargo xtask image server`) run for real, the way
//! the README's compose file runs it: the Docker socket mounted (the server a non-root user in
//! the socket's group), on the network its Docker backend attaches workspaces to. It turns
//! healthy by its own `HEALTHCHECK`, keeps its data in the `/data` volume, and a workspace
//! created through it gets a container from the echo image whose agent calls back by the
//! server's container name and comes online; an A2A message through the server reaches the
//! agent at `http://ws-<id12>:8000` (the server's own loopback is not the host's).

use std::os::unix::fs::MetadataExt;

use molecule_domain::WorkspaceId;
use molecule_provisioner_api::names::{config_volume_name, container_name};
use serde_json::{Value, json};

use super::{IMAGE, SERIAL, container, docker_cli};
use crate::common::eventually;

const SERVER_IMAGE: &str = "molecule-server:dev";
const ADMIN: &str = "image-e2e-admin-token-0123456789abcdefghijk";

/// The server container, its network and the workspaces it started, removed on drop (even
/// when the test fails).
struct Deployment {
    name: String,
    network: String,
    workspaces: std::sync::Mutex<Vec<WorkspaceId>>,
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
        // The server first, so that nothing restarts a workspace behind our back.
        let _ = docker_cli(&["rm", "-f", "-v", &self.name]);
        for id in self.workspaces.lock().unwrap().iter() {
            let _ = docker_cli(&["rm", "-f", &container_name(*id)]);
            let _ = docker_cli(&[
                "volume",
                "rm",
                "-f",
                &config_volume_name(*id),
                &format!("ws-{id}-workspace"),
            ]);
        }
        let _ = docker_cli(&["network", "rm", &self.network]);
    }
}

fn inspect(what: &str, format: &str) -> String {
    let out = docker_cli(&["inspect", "--format", format, what]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts the server image with the socket mounted; returns it and its base URL on the host.
fn deploy() -> (Deployment, String) {
    for image in [SERVER_IMAGE, IMAGE] {
        let found = docker_cli(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert!(
            found.status.success(),
            "the image {image} is missing (CI={}): build it with `cargo xtask image server` \
             and `cargo xtask image`",
            molecule_testkit::in_ci()
        );
    }
    let suffix = WorkspaceId::new().short();
    let deployment = Deployment {
        name: format!("molecule-rs-image-e2e-{suffix}"),
        network: format!("molecule-rs-image-e2e-net-{suffix}"),
        workspaces: std::sync::Mutex::new(Vec::new()),
    };
    let made = docker_cli(&["network", "create", &deployment.network]);
    assert!(made.status.success(), "{made:?}");
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

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http
        .request(method.parse().unwrap(), url)
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(reply) => {
            let status = reply.status().as_u16();
            (status, reply.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test]
async fn the_server_image_runs_workspaces_on_the_docker_backend() {
    let _serial = SERIAL.lock().await;
    let (deployment, base) = deploy();
    // A fresh connection per request: a kept-alive one can be closed by the server's idle
    // timeout while the test waits for the health check, and a POST on it is not retried.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    // Not root, data in the volume, HEALTHCHECK by the binary itself.
    assert_eq!(inspect(SERVER_IMAGE, "{{.Config.User}}"), "65532:65532");
    assert_eq!(
        inspect(
            &deployment.name,
            "{{range .Mounts}}{{if eq .Destination \"/data\"}}{{.Type}}{{end}}{{end}}"
        ),
        "volume"
    );
    eventually("the server answers /health", || async {
        call(&http, "GET", &format!("{base}/health"), None).await == (200, json!({"status": "ok"}))
    })
    .await;
    eventually("docker reports the server healthy", || async {
        inspect(&deployment.name, "{{.State.Health.Status}}") == "healthy"
    })
    .await;

    // A workspace through the server, on its Docker backend.
    let (status, created) = call(
        &http,
        "POST",
        &format!("{base}/workspaces"),
        Some(json!({"name": "from-the-image", "runtime": "langgraph", "tier": 2})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id: WorkspaceId = created["id"].as_str().unwrap().parse().unwrap();
    deployment.workspaces.lock().unwrap().push(id);
    let row = format!("{base}/workspaces/{id}");
    eventually("the workspace comes online", || async {
        call(&http, "GET", &row, None).await.1["status"] == "online"
    })
    .await;
    let (_, running) = container(id).expect("the workspace's container exists");
    assert!(running);
    assert_eq!(
        inspect(
            &container_name(id),
            &format!(
                "{{{{range $k, $v := .NetworkSettings.Networks}}}}{{{{if eq $k \"{}\"}}}}attached{{{{end}}}}{{{{end}}}}",
                deployment.network
            )
        ),
        "attached"
    );

    // A2A through the server reaches the agent on the Docker network.
    let message = json!({
        "jsonrpc": "2.0",
        "id": "1",
        "method": "message/send",
        "params": {"message": {"role": "user", "messageId": WorkspaceId::new().to_string(),
                               "parts": [{"kind": "text", "text": "through the image"}]}},
    });
    let (status, reply) = call(&http, "POST", &format!("{row}/a2a"), Some(message)).await;
    assert_eq!(status, 200, "{reply}");
    let text: String = reply["result"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert!(text.contains("through the image"), "{reply}");

    // Deleting through the server removes the container.
    let (status, reply) = call(&http, "DELETE", &row, None).await;
    assert_eq!(status, 200, "{reply}");
    eventually("the workspace's container is gone", || async {
        container(id).is_none()
    })
    .await;
}
