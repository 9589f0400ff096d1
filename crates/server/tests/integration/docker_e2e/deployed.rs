//! What the tests of the server *deployed as a container* share (`image`: `docker run`;
//! `compose`: the README's `docker-compose.yml`): the admin token they start it with, calls
//! from the host, and the walk through it: healthy, a workspace on its Docker backend comes
//! online on the deployment's network and answers A2A through it, delete removes it.

use molecule_domain::WorkspaceId;
use molecule_provisioner_api::names::container_name;
use serde_json::{Value, json};

use super::{Cleanup, IMAGE, container, docker_cli};
use crate::common::eventually;

/// The server image `cargo xtask image server` builds.
pub(super) const SERVER_IMAGE: &str = "molecule-server:dev";
/// The admin token a deployment under test is started with.
pub(super) const ADMIN: &str = "image-e2e-admin-token-0123456789abcdefghijk";

/// Fails (never skips) when an image the deployment needs is missing.
pub(super) fn require_images() {
    for image in [SERVER_IMAGE, IMAGE] {
        let found = docker_cli(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert!(
            found.status.success(),
            "the image {image} is missing (CI={}): build it with `cargo xtask image server` \
             and `cargo xtask image`",
            molecule_testkit::in_ci()
        );
    }
}

/// `docker inspect --format <format> <what>`, which must succeed.
pub(super) fn inspect(what: &str, format: &str) -> String {
    let out = docker_cli(&["inspect", "--format", format, what]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A deployment's Docker network, removed on drop (declare it first: after the server and
/// the workspaces attached to it are gone; compose leaves a network that containers outside
/// its project were attached to).
pub(super) struct Network(pub(super) String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker_cli(&["network", "rm", &self.0]);
    }
}

/// One admin call from the host: status (0 when no answer) and JSON body.
pub(super) async fn call(
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

/// The walk: the server at `base` (its container `server`) answers `/health` and turns
/// healthy by its own `HEALTHCHECK`; a workspace created through it comes online in a
/// container on `network` (added to `started`, whose drop removes it: drop the deployment's
/// server first, so that nothing restarts it); an A2A message through the server reaches it; delete removes it.
pub(super) async fn serves_a_workspace(base: &str, server: &str, network: &str, started: &Cleanup) {
    // A fresh connection per request: a kept-alive one can be closed by the server's idle
    // timeout while the test waits for the health check, and a POST on it is not retried.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    eventually("the server answers /health", || async {
        call(&http, "GET", &format!("{base}/health"), None).await == (200, json!({"status": "ok"}))
    })
    .await;
    eventually("docker reports the server healthy", || async {
        inspect(server, "{{.State.Health.Status}}") == "healthy"
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
    started.add(id);
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
                "{{{{range $k, $v := .NetworkSettings.Networks}}}}{{{{if eq $k \"{network}\"}}}}attached{{{{end}}}}{{{{end}}}}"
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
