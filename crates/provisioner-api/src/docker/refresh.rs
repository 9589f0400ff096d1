//! Image refresh (spec provisioner §1.12): pull the latest image of each runtime, then
//! force-remove the workspace containers that run a refreshed image, so that the health sweep
//! starts them again from it.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, ListContainersOptions};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::errors::{context, is_not_found, is_removal_in_progress};
use super::{DockerProvisioner, force};
use crate::{ImageRefresh, ProvisionError, RefreshError};

/// The budget of the whole pull phase.
const PULL_BUDGET: Duration = Duration::from_secs(300);
/// The budget of listing the workspace containers.
const LIST_BUDGET: Duration = Duration::from_secs(30);
/// The budget of one container inspection.
const INSPECT_BUDGET: Duration = Duration::from_secs(10);
/// The budget of one forced removal.
const REMOVE_BUDGET: Duration = Duration::from_secs(30);

impl DockerProvisioner {
    pub(super) async fn refresh(
        &self,
        runtimes: &[String],
        recreate: bool,
    ) -> Result<ImageRefresh, RefreshError> {
        let mut result = ImageRefresh::default();
        let docker = match self.docker().await {
            Ok(d) => d,
            Err(cause) => {
                return Err(RefreshError {
                    partial: result,
                    cause,
                });
            }
        };
        let credentials = registry_credentials(|k| std::env::var(k).ok());
        let deadline = Instant::now() + PULL_BUDGET;
        // Several runtimes may share one image (an override): it is pulled once.
        let mut pulled_images: HashMap<String, bool> = HashMap::new();
        let mut refreshed: Vec<(String, String)> = Vec::new();
        for runtime in runtimes {
            let image = self.config.image_for(runtime);
            let ok = match pulled_images.get(&image) {
                Some(ok) => *ok,
                None => {
                    let ok = self
                        .pull(docker, &image, credentials.clone(), deadline)
                        .await;
                    pulled_images.insert(image.clone(), ok);
                    ok
                }
            };
            if ok {
                result.pulled.push(runtime.clone());
                refreshed.push((runtime.clone(), image));
            } else {
                result.failed.push(runtime.clone());
            }
        }
        if !recreate || refreshed.is_empty() {
            return Ok(result);
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("name".to_owned(), vec!["ws-".to_owned()])])),
            ..Default::default()
        };
        let containers =
            match tokio::time::timeout(LIST_BUDGET, docker.list_containers(Some(options))).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    return Err(RefreshError {
                        partial: result,
                        cause: context(&e, "list workspace containers"),
                    });
                }
                Err(_) => {
                    return Err(RefreshError {
                        partial: result,
                        cause: ProvisionError::Unavailable(
                            "listing workspace containers timed out".into(),
                        ),
                    });
                }
            };
        for summary in containers {
            let Some(name) = summary.names.and_then(|names| {
                names
                    .into_iter()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .find(|n| n.starts_with("ws-"))
            }) else {
                continue;
            };
            let image = match tokio::time::timeout(
                INSPECT_BUDGET,
                docker.inspect_container(&name, None),
            )
            .await
            {
                Ok(Ok(info)) => info.config.and_then(|c| c.image).unwrap_or_default(),
                Ok(Err(e)) => {
                    tracing::warn!(container = %name, error = %e, "image refresh: cannot inspect");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(container = %name, "image refresh: inspection timed out");
                    continue;
                }
            };
            if !refreshed
                .iter()
                .any(|(runtime, refreshed)| runs_refreshed(&image, runtime, refreshed))
            {
                continue;
            }
            match tokio::time::timeout(REMOVE_BUDGET, docker.remove_container(&name, Some(force())))
                .await
            {
                Ok(Ok(())) => result.recreated.push(name),
                Ok(Err(e)) if is_not_found(&e) || is_removal_in_progress(&e) => {}
                Ok(Err(e)) => {
                    tracing::warn!(container = %name, error = %e, "image refresh: cannot remove")
                }
                Err(_) => tracing::warn!(container = %name, "image refresh: removal timed out"),
            }
        }
        Ok(result)
    }

    /// Pulls one image, reading the stream to its end within the phase's deadline. Whether
    /// it succeeded; the daemon's reasons are only logged.
    async fn pull(
        &self,
        docker: &Docker,
        image: &str,
        credentials: Option<DockerCredentials>,
        deadline: Instant,
    ) -> bool {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            platform: self.config.platform.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut stream = docker.create_image(Some(options), None, credentials);
        let drained = tokio::time::timeout_at(deadline, async {
            let mut last_error = None;
            while let Some(item) = stream.next().await {
                match item {
                    Err(e) => last_error = Some(e.to_string()),
                    // An error inside the progress stream.
                    Ok(info) => {
                        if let Some(detail) = info.error_detail {
                            last_error = Some(detail.message.unwrap_or_default());
                        }
                    }
                }
            }
            last_error
        })
        .await;
        match drained {
            Ok(None) => {
                tracing::info!(image, "image refresh: pulled");
                true
            }
            Ok(Some(error)) => {
                tracing::warn!(image, %error, "image refresh: pull failed");
                false
            }
            Err(_) => {
                tracing::warn!(
                    image,
                    "image refresh: pull abandoned after the phase's budget"
                );
                false
            }
        }
    }
}

/// Whether a container's configured image is one that was just refreshed for `runtime`: the
/// very image, or (as the reference matches) any image naming `workspace-template-<runtime>`.
pub(crate) fn runs_refreshed(container_image: &str, runtime: &str, refreshed: &str) -> bool {
    container_image == refreshed
        || container_image.contains(&format!("workspace-template-{runtime}"))
}

/// Registry credentials from `GHCR_USER` and `GHCR_TOKEN`, only when both are set (trimmed).
pub(crate) fn registry_credentials(
    get: impl Fn(&str) -> Option<String>,
) -> Option<DockerCredentials> {
    let var = |k: &str| {
        get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let (username, password) = (var("GHCR_USER")?, var("GHCR_TOKEN")?);
    Some(DockerCredentials {
        username: Some(username),
        password: Some(password),
        serveraddress: Some("ghcr.io".to_owned()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_containers_are_recreated() {
        let latest = "ghcr.io/molecule-ai/workspace-template-hermes:latest";
        assert!(runs_refreshed(latest, "hermes", latest));
        assert!(runs_refreshed(
            "ghcr.io/molecule-ai/workspace-template-hermes@sha256:abc",
            "hermes",
            latest
        ));
        assert!(runs_refreshed("local:dev", "langgraph", "local:dev"));
        assert!(!runs_refreshed(
            "ghcr.io/molecule-ai/workspace-template-langgraph:latest",
            "hermes",
            latest
        ));
        assert!(!runs_refreshed("other:dev", "langgraph", "local:dev"));
    }

    #[test]
    fn credentials_need_both_variables() {
        let both = |k: &str| match k {
            "GHCR_USER" => Some(" me ".to_owned()),
            "GHCR_TOKEN" => Some("tok".to_owned()),
            _ => None,
        };
        let c = registry_credentials(both).unwrap();
        assert_eq!(c.username.as_deref(), Some("me"));
        assert_eq!(c.password.as_deref(), Some("tok"));
        assert_eq!(c.serveraddress.as_deref(), Some("ghcr.io"));
        assert!(registry_credentials(|k| (k == "GHCR_USER").then(|| "me".to_owned())).is_none());
        assert!(
            registry_credentials(|k| (k == "GHCR_TOKEN")
                .then(|| " ".to_owned())
                .or_else(|| (k == "GHCR_USER").then(|| "me".to_owned())))
            .is_none()
        );
    }
}
