//! The Docker backend on the real local engine, with the echo-agent image that
//! `cargo xtask image` builds (no registry is reachable: nothing is pulled).
#![cfg(feature = "docker")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;
use molecule_domain::{Tier, WorkspaceAccess, WorkspaceId};
use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner, PullPolicy};
use molecule_provisioner_api::names::{
    MANAGED_LABEL, WORKSPACE_LABEL, config_volume_name, container_name,
};
use molecule_provisioner_api::{
    ProvisionError, ProvisionRequest, Provisioner, Running, SecretValue,
};

const IMAGE: &str = "molecule-echo-agent:dev";
const NETWORK: &str = "molecule-rs-test-net";

/// A test configuration: the local echo image, never pulled, no host access for any tier.
fn config() -> DockerConfig {
    DockerConfig {
        image_override: Some(IMAGE.to_owned()),
        pull_policy: PullPolicy::Never,
        host_access: false,
        network: NETWORK.to_owned(),
        restart_policy: "no".to_owned(),
        ..DockerConfig::default()
    }
}

fn request(id: WorkspaceId, tier: Tier) -> ProvisionRequest {
    ProvisionRequest {
        workspace_id: id,
        name: "docker-test".into(),
        role: Some("tester".into()),
        tier,
        runtime: "langgraph".into(),
        parent_id: None,
        model: None,
        template: None,
        config_files: Vec::new(),
        workspace_dir: None,
        workspace_access: WorkspaceAccess::None,
        platform_url: "http://127.0.0.1:9".into(),
        env: BTreeMap::from([("HEARTBEAT_SECONDS".to_owned(), SecretValue::new("60"))]),
        auth_token: Some(SecretValue::new("tok-123")),
        platform_inbound_secret: Some(SecretValue::new("inbound-456")),
        bootstrap_token: None,
    }
}

/// Removes what a test left behind, even when it fails.
struct Cleanup(WorkspaceId);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &container_name(self.0)])
            .output();
        let _ = std::process::Command::new("docker")
            .args([
                "volume",
                "rm",
                "-f",
                &config_volume_name(self.0),
                &format!("ws-{}-workspace", self.0),
            ])
            .output();
    }
}

async fn docker() -> Docker {
    let docker = Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .expect("no Docker daemon answers: these tests need the local engine");
    if docker.inspect_image(IMAGE).await.is_err() {
        panic!(
            "the image {IMAGE} is missing: build it with `cargo xtask image` \
             (`cargo xtask ci` builds it before the tests)"
        );
    }
    docker
}

#[tokio::test]
async fn start_check_stop_remove() {
    let docker = docker().await;
    let backend = DockerProvisioner::connect(config()).await.unwrap();
    let id = WorkspaceId::new();
    let _cleanup = Cleanup(id);
    let name = container_name(id);

    // A missing image is a typed error at once, not a hang on a registry.
    let mut missing = config();
    missing.image_override = Some("molecule-rs-no-such-image:never".into());
    let missing = DockerProvisioner::connect(missing).await.unwrap();
    match missing.start(&request(id, Tier::Standard)).await {
        Err(ProvisionError::ImageNotFound { image, .. }) => {
            assert_eq!(image, "molecule-rs-no-such-image:never");
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    assert_eq!(backend.running(id, None).await, Running::No);

    let started = backend.start(&request(id, Tier::Standard)).await.unwrap();
    let url = started.agent_url.clone().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(started.instance_id, None);

    // The container: labels, loopback port, config volume, env, limits.
    let info = docker.inspect_container(&name, None).await.unwrap();
    let labels = info.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(labels.get(MANAGED_LABEL).map(String::as_str), Some("true"));
    assert_eq!(labels.get(WORKSPACE_LABEL), Some(&id.to_string()));
    let host = info.host_config.clone().unwrap();
    let bindings = host
        .port_bindings
        .unwrap()
        .remove("8000/tcp")
        .unwrap()
        .unwrap();
    assert_eq!(bindings[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(host.memory, Some(512 * 1024 * 1024));
    assert_eq!(host.privileged, Some(false));
    let env = info.config.unwrap().env.unwrap();
    assert_eq!(env[0], format!("WORKSPACE_ID={id}"));
    assert!(env.contains(&"MOLECULE_AGENT_ROLE=tester".to_owned()));
    let networks = info.network_settings.unwrap().networks.unwrap();
    assert!(networks.contains_key(NETWORK), "{networks:?}");
    let volume = docker
        .inspect_volume(&config_volume_name(id))
        .await
        .unwrap();
    assert_eq!(
        volume.labels.get(MANAGED_LABEL).map(String::as_str),
        Some("true")
    );

    // The agent answers on the published port.
    let http = reqwest::Client::new();
    let mut card = None;
    for _ in 0..100 {
        if let Ok(answer) = http
            .get(format!("{url}/.well-known/agent.json"))
            .send()
            .await
            && answer.status().is_success()
        {
            card = Some(answer.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let card = card.expect("the agent card never answered");
    assert_eq!(card["name"], format!("echo-{id}"));
    assert_eq!(backend.running(id, None).await, Running::Yes);
    assert!(
        backend.managed_workspaces().await.unwrap().contains(&id),
        "listed as managed"
    );

    // The secrets were written into the config volume before start.
    let token = backend.read_file(id, "/configs/.auth_token").await.unwrap();
    assert_eq!(token, b"tok-123");
    let secret = backend
        .read_file(id, "/configs/.platform_inbound_secret")
        .await
        .unwrap();
    assert_eq!(secret, b"inbound-456");
    assert!(matches!(
        backend.read_file(id, "/configs/nope").await,
        Err(ProvisionError::NotFound(_))
    ));

    // Stop: gone, not running; stopping again succeeds.
    backend.stop(id, None).await.unwrap();
    assert_eq!(backend.running(id, None).await, Running::No);
    assert!(
        !backend.managed_workspaces().await.unwrap().contains(&id),
        "gone from the managed list"
    );
    assert!(docker.inspect_container(&name, None).await.is_err());
    backend.stop(id, None).await.unwrap();

    // The token can be rewritten into the volume without the agent running.
    backend
        .write_auth_token(id, &SecretValue::new("tok-789"))
        .await
        .unwrap();

    // A sandboxed (tier 1) restart: read-only root, only /configs, the new token inside.
    backend.start(&request(id, Tier::Sandboxed)).await.unwrap();
    let info = docker.inspect_container(&name, None).await.unwrap();
    let host = info.host_config.unwrap();
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(
        host.binds.unwrap(),
        vec![format!("{}:/configs", config_volume_name(id))]
    );
    // The start wrote the request's token over the rewritten one.
    let token = backend.read_file(id, "/configs/.auth_token").await.unwrap();
    assert_eq!(token, b"tok-123");
    backend.stop(id, None).await.unwrap();

    // Volumes: removed, and removing again succeeds.
    backend.remove_volume(id).await.unwrap();
    assert!(
        docker
            .inspect_volume(&config_volume_name(id))
            .await
            .is_err()
    );
    backend.remove_volume(id).await.unwrap();
}

#[tokio::test]
async fn unreachable_daemon_is_unknown_not_no() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nobody listens on (connection refused), and no socket at all.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let missing = dir.path().join("missing.sock");
    for socket in [dead, missing] {
        check_unreachable(DockerProvisioner::with_socket(
            &socket.to_string_lossy(),
            config(),
        ))
        .await;
    }
}

async fn check_unreachable(backend: DockerProvisioner) {
    let id = WorkspaceId::new();
    assert!(matches!(
        backend.running(id, None).await,
        Running::Unknown(_)
    ));
    assert!(matches!(
        backend.stop(id, None).await,
        Err(ProvisionError::Unavailable(_))
    ));
    assert!(matches!(
        backend.start(&request(id, Tier::Standard)).await,
        Err(ProvisionError::Unavailable(_))
    ));
}
