//! Starts, checks and stops one workspace container with the library alone (no server, no
//! database):
//!
//! ```text
//! cargo xtask image   # builds molecule-echo-agent:dev
//! cargo run -p molecule-provisioner-api --features docker --example docker_workspace [IMAGE]
//! ```

use std::collections::BTreeMap;

use molecule_domain::{Tier, WorkspaceAccess, WorkspaceId};
use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner, PullPolicy};
use molecule_provisioner_api::{ProvisionRequest, Provisioner, SecretValue};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let image = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "molecule-echo-agent:dev".to_owned());
    let config = DockerConfig {
        image_override: Some(image),
        pull_policy: PullPolicy::Missing,
        host_access: false,
        ..DockerConfig::from_env()
    };
    let backend = DockerProvisioner::connect(config).await?;
    let id = WorkspaceId::new();
    let request = ProvisionRequest {
        workspace_id: id,
        name: "example".into(),
        role: None,
        tier: Tier::Standard,
        runtime: "langgraph".into(),
        parent_id: None,
        model: None,
        template: None,
        config_files: Vec::new(),
        workspace_dir: None,
        workspace_access: WorkspaceAccess::None,
        platform_url: "http://127.0.0.1:8080".into(),
        env: BTreeMap::new(),
        auth_token: Some(SecretValue::new("example-token")),
        platform_inbound_secret: None,
        bootstrap_token: None,
    };
    let started = backend.start(&request).await?;
    println!("started workspace {id}: agent at {:?}", started.agent_url);
    println!("running: {:?}", backend.running(id, None).await);
    backend.stop(id, None).await?;
    println!("stopped; running: {:?}", backend.running(id, None).await);
    backend.remove_volume(id).await?;
    println!("volumes removed");
    Ok(())
}
