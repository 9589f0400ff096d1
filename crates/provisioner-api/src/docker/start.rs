//! Starting a workspace container: the network, volumes and image it needs, its host
//! configuration by tier, the config files and secrets written before the agent starts, and
//! the agent URL read back from the published port.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, CreateImageOptions, RemoveVolumeOptions};
use futures_util::StreamExt;
use molecule_domain::{Tier, WorkspaceId};

use super::errors::{context, is_not_found, status};
use super::{AGENT_UID, DockerProvisioner, PullPolicy, archive, config, force};
use crate::names::{
    AGENT_PORT, MANAGED_LABEL, claude_sessions_volume_name, config_volume_name, container_name,
    internal_url,
};
use crate::progress::{Progress, Step, step};
use crate::{ProvisionError, ProvisionRequest, Started};

impl DockerProvisioner {
    /// Starts a workspace's container (spec §1.5, lifecycle §4.2): network and volumes, the
    /// container replaced, the image made local, the secrets written into `/configs` before
    /// the agent starts; answers the agent URL from the published port.
    pub(super) async fn launch(
        &self,
        request: &ProvisionRequest,
        progress: &dyn Progress,
    ) -> Result<Started, ProvisionError> {
        let docker = self.docker().await?;
        let id = request.workspace_id;
        let name = container_name(id);
        self.ensure_network(docker).await?;
        let (env, dropped) = config::build_env(&self.config, request);
        if !dropped.is_empty() {
            tracing::warn!(workspace = %id, keys = ?dropped, "docker: reserved env keys from the request ignored");
        }
        let image = self.config.image_for(&request.runtime);
        let volumes = async {
            self.create_volume(docker, config_volume_name(id), id)
                .await?;
            let mut binds = vec![format!("{}:/configs", config_volume_name(id))];
            if request.tier != Tier::Sandboxed {
                let bind = config::workspace_bind(&self.config, request);
                if bind.starts_with(&config::workspace_volume_name(id)) {
                    self.create_volume(docker, config::workspace_volume_name(id), id)
                        .await?;
                }
                binds.push(bind);
                if request.runtime == "claude-code" {
                    let sessions = claude_sessions_volume_name(id);
                    let reset = request.env.get("WORKSPACE_RESET_SESSION").is_some_and(|v| {
                        matches!(
                            v.expose().trim(),
                            "1" | "true" | "TRUE" | "True" | "t" | "T"
                        )
                    });
                    if reset
                        && let Err(e) = docker
                            .remove_volume(&sessions, Some(RemoveVolumeOptions { force: true }))
                            .await
                        && !is_not_found(&e)
                    {
                        tracing::warn!(workspace = %id, error = %e, "docker: cannot reset the session volume");
                    }
                    self.create_volume(docker, sessions.clone(), id).await?;
                    binds.push(format!("{sessions}:/root/.claude/sessions"));
                }
            }
            Ok(binds)
        };
        let binds = step(progress, Step::Volume, volumes).await?;
        let tier = config::tier_settings(&self.config, request.tier, id, binds);

        let port = format!("{AGENT_PORT}/tcp");
        let mut host = HostConfig {
            binds: Some(tier.binds.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(restart_policy(&self.config.restart_policy)),
                maximum_retry_count: None,
            }),
            privileged: Some(tier.privileged),
            readonly_rootfs: Some(tier.read_only_root),
            memory: (tier.memory_bytes > 0).then_some(tier.memory_bytes),
            nano_cpus: (tier.nano_cpus > 0).then_some(tier.nano_cpus),
            ..Default::default()
        };
        if tier.host_pid {
            host.pid_mode = Some("host".to_owned());
        }
        if tier.read_only_root {
            host.tmpfs = Some(HashMap::from([(
                "/tmp".to_owned(),
                "rw,noexec,nosuid,size=64m".to_owned(),
            )]));
        }
        let networking = if tier.host_network {
            // Host mode: no published port, no endpoint on the user network (spec §2.3.13).
            host.network_mode = Some("host".to_owned());
            None
        } else {
            host.port_bindings = Some(HashMap::from([(
                port.clone(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(String::new()),
                }]),
            )]));
            host.network_mode = Some(self.config.network.clone());
            Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.config.network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![name.clone()]),
                        ..Default::default()
                    },
                )])),
            })
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            env: Some(env),
            labels: Some(Self::labels(id)),
            exposed_ports: (!tier.host_network).then(|| vec![port.clone()]),
            host_config: Some(host),
            networking_config: networking,
            ..Default::default()
        };

        self.remove_and_wait(docker, &name).await;
        let runtime_hint = if config::is_known_runtime(&request.runtime) {
            request.runtime.clone()
        } else {
            config::runtime_tag(&image)
        };
        step(
            progress,
            Step::Image,
            self.ensure_image(docker, &image, &runtime_hint),
        )
        .await?;
        let container = self.create_and_start(docker, request, &name, &image, &runtime_hint, body);
        step(progress, Step::Container, container).await?;
        let url = if tier.host_network {
            config::host_network_url()
        } else {
            self.agent_url(docker, id).await
        };
        tracing::info!(workspace = %id, container = %name, %image, url = %url, "docker: workspace started");
        // The container id is not an instance id: a non-empty instance id means EC2 to the
        // server (terminal and file access choose the EIC path by it).
        Ok(Started {
            agent_url: Some(url),
            instance_id: None,
        })
    }

    /// Creates the container, writes the credentials into `/configs`, starts it.
    async fn create_and_start(
        &self,
        docker: &Docker,
        request: &ProvisionRequest,
        name: &str,
        image: &str,
        runtime_hint: &str,
        body: ContainerCreateBody,
    ) -> Result<(), ProvisionError> {
        let id = request.workspace_id;
        let name = name.to_owned();
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            platform: self.config.platform.clone().unwrap_or_default(),
        };
        docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| {
                if status(&e) == Some(404) {
                    ProvisionError::ImageNotFound {
                        image: image.to_owned(),
                        runtime: runtime_hint.to_owned(),
                        detail: e.to_string(),
                    }
                } else {
                    context(&e, &format!("create {name}"))
                }
            })?;

        // The config files (a template's, or the generated config.yaml) go in first...
        if !request.config_files.is_empty()
            && let Err(e) = self.upload_config_files(docker, &name, request).await
        {
            let _ = docker.remove_container(&name, Some(force())).await;
            return Err(e);
        }
        // ...then the secrets, before the agent starts, 0600 and owned by the agent's uid.
        let mut files: Vec<(&str, &[u8], u32)> = Vec::new();
        if let Some(token) = &request.auth_token {
            files.push((".auth_token", token.expose().as_bytes(), 0o600));
        }
        if let Some(secret) = &request.platform_inbound_secret {
            files.push((
                ".platform_inbound_secret",
                secret.expose().as_bytes(),
                0o600,
            ));
        }
        if !files.is_empty()
            && let Err(e) = self.upload_configs(docker, &name, &files).await
        {
            tracing::warn!(workspace = %id, error = %e, "docker: cannot write the secrets into /configs");
        }

        if let Err(e) = docker.start_container(&name, None).await {
            let _ = docker.remove_container(&name, Some(force())).await;
            return Err(context(&e, &format!("start {name}")));
        }
        Ok(())
    }

    /// Uploads the request's config files into the created container's `/configs`, owned by
    /// the agent's uid.
    async fn upload_config_files(
        &self,
        docker: &Docker,
        container: &str,
        request: &ProvisionRequest,
    ) -> Result<(), ProvisionError> {
        let tar = archive::tree(&request.config_files, AGENT_UID).map_err(|e| match e {
            archive::TreeError::Refused(r) => ProvisionError::Refused(r),
            archive::TreeError::Io(e) => ProvisionError::Failed(format!("archive: {e}")),
        })?;
        super::upload_to_configs(docker, container, tar).await
    }

    /// Creates the network when it is missing (the reference expected docker-compose to).
    async fn ensure_network(&self, docker: &Docker) -> Result<(), ProvisionError> {
        let mut ready = self.network_ready.lock().await;
        if *ready {
            return Ok(());
        }
        match docker.inspect_network(&self.config.network, None).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                let request = NetworkCreateRequest {
                    name: self.config.network.clone(),
                    driver: Some("bridge".to_owned()),
                    labels: Some(HashMap::from([(
                        MANAGED_LABEL.to_owned(),
                        "true".to_owned(),
                    )])),
                    ..Default::default()
                };
                match docker.create_network(request).await {
                    Ok(_) => {
                        tracing::info!(network = %self.config.network, "docker: created network")
                    }
                    // Another process created it meanwhile.
                    Err(e) if status(&e) == Some(409) => {}
                    Err(e) => return Err(context(&e, "create network")),
                }
            }
            Err(e) => return Err(context(&e, "inspect network")),
        }
        *ready = true;
        Ok(())
    }

    /// Makes the image local: pulls by the policy (the stream read to EOF, within the pull
    /// budget; a pull failure is only logged), then requires the image to be there.
    async fn ensure_image(
        &self,
        docker: &Docker,
        image: &str,
        runtime: &str,
    ) -> Result<(), ProvisionError> {
        let local = match docker.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(context(&e, "inspect image")),
        };
        let pull = match self.config.pull_policy {
            PullPolicy::Never => false,
            PullPolicy::Missing => !local,
            PullPolicy::MissingOrMoving => !local || config::is_moving_tag(image),
        };
        if pull {
            let options = CreateImageOptions {
                from_image: Some(image.to_owned()),
                platform: self.config.platform.clone().unwrap_or_default(),
                ..Default::default()
            };
            let mut stream = docker.create_image(Some(options), None, None);
            let drained = tokio::time::timeout(self.config.pull_timeout, async {
                let mut last_error = None;
                while let Some(item) = stream.next().await {
                    if let Err(e) = item {
                        last_error = Some(e.to_string());
                    }
                }
                last_error
            })
            .await;
            match drained {
                Ok(None) => tracing::info!(image, "docker: pulled image"),
                Ok(Some(e)) => tracing::warn!(image, error = %e, "docker: pull failed"),
                Err(_) => tracing::warn!(image, "docker: pull abandoned after its time budget"),
            }
        }
        if pull || !local {
            match docker.inspect_image(image).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    return Err(ProvisionError::ImageNotFound {
                        image: image.to_owned(),
                        runtime: runtime.to_owned(),
                        detail: e.to_string(),
                    });
                }
                Err(e) => return Err(context(&e, "inspect image")),
            }
        }
        Ok(())
    }

    /// Force-removes a container and waits (up to 10 s) until its name is free (spec §2.3.14).
    async fn remove_and_wait(&self, docker: &Docker, name: &str) {
        let _ = docker.remove_container(name, Some(force())).await;
        for _ in 0..50 {
            match docker.inspect_container(name, None).await {
                Err(e) if is_not_found(&e) => return,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        tracing::warn!(
            container = name,
            "docker: container still present after removal"
        );
    }

    /// The agent URL from the published port: up to 3 inspections 500 ms apart, then the
    /// internal URL.
    async fn agent_url(&self, docker: &Docker, id: WorkspaceId) -> String {
        let name = container_name(id);
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let Ok(info) = docker.inspect_container(&name, None).await else {
                continue;
            };
            let binding = info
                .network_settings
                .and_then(|n| n.ports)
                .and_then(|mut p| p.remove(&format!("{AGENT_PORT}/tcp")))
                .flatten()
                .and_then(|b| b.into_iter().find(|b| b.host_port.is_some()));
            if let Some(PortBinding {
                host_ip,
                host_port: Some(port),
            }) = binding
            {
                let ip = host_ip
                    .filter(|ip| !ip.is_empty() && ip != "0.0.0.0")
                    .unwrap_or_else(|| "127.0.0.1".to_owned());
                return format!("http://{ip}:{port}");
            }
        }
        internal_url(id)
    }
}

fn restart_policy(name: &str) -> RestartPolicyNameEnum {
    match name {
        "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
    }
}
