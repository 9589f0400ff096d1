//! Choosing the provisioning backend, once, at boot (Decision 5).

use std::sync::Arc;

use anyhow::{Context, bail};
use molecule_provisioner_api::Provisioner;
use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner};

use crate::config::Config;

/// The backend `MOLECULE_BACKEND` names: `docker` (its daemon must answer), `ec2` (AWS EC2 or
/// a compatible endpoint, configured by `MOLECULE_EC2_*`; needs the `ec2` cargo feature),
/// `none`, or unset for Docker when its daemon answers and none otherwise.
pub async fn choose(config: &Config) -> anyhow::Result<Option<Arc<dyn Provisioner>>> {
    let wanted = config
        .backend
        .as_deref()
        .map(|b| b.trim().to_ascii_lowercase())
        .filter(|b| !b.is_empty());
    match wanted.as_deref() {
        Some("none") => {
            tracing::info!("backend: none (only external workspaces can run)");
            Ok(None)
        }
        Some("docker") => {
            let docker = DockerProvisioner::connect(DockerConfig::from_env())
                .await
                .context("MOLECULE_BACKEND=docker, but the Docker daemon does not answer")?;
            tracing::info!("backend: docker");
            Ok(Some(Arc::new(docker)))
        }
        Some("ec2") => ec2().await,
        Some(other) => bail!("MOLECULE_BACKEND must be docker, ec2 or none, not {other:?}"),
        None => match DockerProvisioner::connect(DockerConfig::from_env()).await {
            Ok(docker) => {
                tracing::info!("backend: docker (its daemon answered)");
                Ok(Some(Arc::new(docker)))
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "backend: none — no Docker daemon answered; only external workspaces can run"
                );
                Ok(None)
            }
        },
    }
}

/// Whether agents are reached by container name on the Docker network rather than at the
/// loopback port their container publishes: this server runs inside Docker and starts them
/// with its Docker backend (a2a.md §1.2.4 step 5). The server's container must then be on
/// the workspaces' network (`MOLECULE_DOCKER_NETWORK`).
pub fn reaches_agents_by_name(config: &Config, backend: Option<&dyn Provisioner>) -> bool {
    let docker = backend.is_some_and(|b| b.kind() == molecule_provisioner_api::BackendKind::Docker);
    let by_name = docker && config.runs_in_docker();
    if by_name {
        tracing::info!("running inside Docker: agents are reached as http://ws-<id12>:8000");
    }
    by_name
}

/// The EC2 backend from `MOLECULE_EC2_*`, `AWS_*` and the standard AWS provider chain.
#[cfg(feature = "ec2")]
async fn ec2() -> anyhow::Result<Option<Arc<dyn Provisioner>>> {
    use molecule_provisioner_api::ec2::{Ec2Config, Ec2Provisioner};
    let config = Ec2Config::from_env();
    let (region, endpoint) = (config.region.clone(), config.endpoint.clone());
    let ec2 = Ec2Provisioner::new(config)
        .await
        .context("MOLECULE_BACKEND=ec2, but the EC2 backend cannot be built")?;
    tracing::info!(%region, endpoint = endpoint.as_deref().unwrap_or("aws"), "backend: ec2");
    Ok(Some(Arc::new(ec2)))
}

#[cfg(not(feature = "ec2"))]
async fn ec2() -> anyhow::Result<Option<Arc<dyn Provisioner>>> {
    bail!("MOLECULE_BACKEND=ec2, but this build has no EC2 backend: build with `--features ec2`")
}
