//! Choosing the provisioning backend, once, at boot (Decision 5).

use std::sync::Arc;

use anyhow::{Context, bail};
use molecule_provisioner_api::Provisioner;
use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner};

use crate::config::Config;

/// The backend `MOLECULE_BACKEND` names: `docker` (its daemon must answer), `none`, or unset
/// for Docker when its daemon answers and none otherwise. `ec2` is refused until that backend
/// exists in this build.
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
        Some("ec2") => bail!("MOLECULE_BACKEND=ec2 is not available in this build yet"),
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
