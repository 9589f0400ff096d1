//! The backend conformance suite: the same `Provisioner` contract checked against every
//! backend built in (Docker on the local engine with `molecule-echo-agent:dev`, EC2 on a local
//! `moto_server`). A backend whose part is missing fails, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(any(feature = "docker", feature = "ec2"))]

#[cfg(feature = "ec2")]
mod support;

use std::time::Duration;

use molecule_domain::{Tier, WorkspaceId};
use molecule_provisioner_api::{ProvisionRequest, Provisioner, Running};

/// How long a started workspace may take to be reported running.
const RUNNING_WITHIN: Duration = Duration::from_secs(30);

/// The contract, on one backend: start → running; listed as managed; console output; stop →
/// not running, not managed; stop twice; an unknown workspace is not running.
async fn contract(backend: &dyn Provisioner, request: impl Fn(WorkspaceId) -> ProvisionRequest) {
    let unknown = WorkspaceId::new();
    assert_eq!(backend.running(unknown, None).await, Running::No);
    backend.stop(unknown, None).await.unwrap();

    let id = WorkspaceId::new();
    let started = backend.start(&request(id)).await.unwrap();
    let instance = started.instance_id.as_deref();
    let deadline = tokio::time::Instant::now() + RUNNING_WITHIN;
    loop {
        match backend.running(id, instance).await {
            Running::Yes => break,
            other if tokio::time::Instant::now() >= deadline => {
                panic!("not running within {RUNNING_WITHIN:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        backend.managed_workspaces().await.unwrap().contains(&id),
        "a started workspace is managed"
    );
    backend.console_output(id, instance).await.unwrap();

    backend.stop(id, instance).await.unwrap();
    assert_eq!(backend.running(id, instance).await, Running::No);
    assert!(
        !backend.managed_workspaces().await.unwrap().contains(&id),
        "a stopped workspace is no longer managed"
    );
    backend.stop(id, instance).await.unwrap();
    backend.remove_volume(id).await.unwrap();
}

#[cfg(feature = "ec2")]
#[tokio::test]
async fn ec2_backend_conforms() {
    let moto = support::moto();
    let backend = support::backend(&moto.endpoint()).await;
    contract(&backend, |id| {
        support::request(id, Tier::Privileged, "langgraph")
    })
    .await;
}

#[cfg(feature = "docker")]
#[tokio::test]
async fn docker_backend_conforms() {
    use std::collections::BTreeMap;

    use molecule_domain::WorkspaceAccess;
    use molecule_provisioner_api::SecretValue;
    use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner, PullPolicy};

    const IMAGE: &str = "molecule-echo-agent:dev";
    let config = DockerConfig {
        image_override: Some(IMAGE.to_owned()),
        pull_policy: PullPolicy::Never,
        host_access: false,
        network: "molecule-rs-test-net".to_owned(),
        restart_policy: "no".to_owned(),
        ..DockerConfig::default()
    };
    let backend = DockerProvisioner::connect(config)
        .await
        .expect("no Docker daemon answers: the Docker conformance run needs the local engine");
    let request = |id| ProvisionRequest {
        workspace_id: id,
        name: "conformance".into(),
        role: None,
        tier: Tier::Standard,
        runtime: "langgraph".into(),
        parent_id: None,
        model: None,
        template: None,
        config_files: Vec::new(),
        workspace_dir: None,
        workspace_access: WorkspaceAccess::None,
        platform_url: "http://127.0.0.1:9".into(),
        env: BTreeMap::from([("HEARTBEAT_SECONDS".to_owned(), SecretValue::new("60"))]),
        auth_token: Some(SecretValue::new("tok")),
        platform_inbound_secret: None,
        bootstrap_token: None,
    };
    let image = std::process::Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .expect("run docker");
    assert!(
        image.status.success(),
        "the image {IMAGE} is missing: build it with `cargo xtask image`"
    );
    contract(&backend, request).await;
}
