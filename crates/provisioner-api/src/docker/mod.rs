//! The local Docker backend (spec provisioner §1.5, lifecycle §4.2), over bollard.
//!
//! A workspace is one container `ws-<id12>` on the configured network, started from the
//! runtime's image with its config volume `ws-<id12>-configs` at `/configs`, agent port 8000
//! published on `127.0.0.1` with an ephemeral host port. The secrets (`.auth_token`,
//! `.platform_inbound_secret`) are written into the config volume between create and start,
//! mode 0600 and owned by uid 1000, so the agent never reads a stale token (spec §2.3.4–5).
//!
//! ```no_run
//! # async fn demo() -> Result<(), molecule_provisioner_api::ProvisionError> {
//! use molecule_provisioner_api::docker::{DockerConfig, DockerProvisioner};
//! let docker = DockerProvisioner::connect(DockerConfig::from_env()).await?;
//! # let _ = docker; Ok(()) }
//! ```

mod archive;
pub mod config;
mod refresh;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, RemoveVolumeOptions,
    UploadToContainerOptions,
};
use futures_util::StreamExt;
use molecule_domain::{Runtime, Tier, WorkspaceId};
use tokio::sync::{Mutex, OnceCell};

pub use self::config::{DockerConfig, PullPolicy, TierLimits};
use crate::names::{
    AGENT_PORT, MANAGED_LABEL, WORKSPACE_LABEL, claude_sessions_volume_name, config_volume_name,
    container_name, internal_url,
};
use crate::{
    BackendKind, ImageRefresh, ProvisionError, ProvisionRequest, Provisioner, RefreshError,
    Running, SecretValue, Started,
};

/// How long one Docker API call may take (pulls have their own budget).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// The uid the agent runs as; secrets in `/configs` belong to it.
const AGENT_UID: u64 = 1000;

/// The Docker backend. Cheap to share: hold it in an `Arc<dyn Provisioner>`.
pub struct DockerProvisioner {
    /// The client as configured, before version negotiation, or why there is none.
    raw: Result<Docker, String>,
    /// The client after API-version negotiation with the daemon (done once, on first use).
    client: OnceCell<Docker>,
    config: DockerConfig,
    /// Serialises the network check-and-create of this process.
    network_ready: Mutex<bool>,
    endpoint: String,
}

impl std::fmt::Debug for DockerProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProvisioner")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish()
    }
}

impl DockerProvisioner {
    /// Connects to the local daemon the standard way (`DOCKER_HOST`, else
    /// `/var/run/docker.sock`), negotiates the API version, and fails when the daemon does not
    /// answer (then the platform has no Docker backend).
    pub async fn connect(config: DockerConfig) -> Result<Self, ProvisionError> {
        let raw = Docker::connect_with_defaults().map_err(|e| classify(&e))?;
        let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "default".to_owned());
        let this = Self::from_client(Ok(raw), config, endpoint);
        this.client().await.map_err(|e| classify(&e))?;
        Ok(this)
    }

    /// A provisioner for the daemon at a Unix socket path. Nothing is contacted here: the API
    /// version is negotiated on first use, so a socket that is missing or that nobody listens
    /// on gives [`Running::Unknown`] and [`ProvisionError::Unavailable`] from the calls.
    pub fn with_socket(path: &str, config: DockerConfig) -> Self {
        let raw =
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| e.to_string());
        Self::from_client(raw, config, format!("unix://{path}"))
    }

    fn from_client(raw: Result<Docker, String>, config: DockerConfig, endpoint: String) -> Self {
        Self {
            raw,
            client: OnceCell::new(),
            config,
            network_ready: Mutex::new(false),
            endpoint,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The negotiated client; retried on the next call after a failure.
    async fn client(&self) -> Result<&Docker, DockerError> {
        let raw = self.raw.clone().map_err(DockerError::SocketNotFoundError)?;
        self.client
            .get_or_try_init(|| raw.negotiate_version())
            .await
    }

    async fn docker(&self) -> Result<&Docker, ProvisionError> {
        self.client().await.map_err(|e| classify(&e))
    }

    fn labels(id: WorkspaceId) -> HashMap<String, String> {
        HashMap::from([
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (WORKSPACE_LABEL.to_owned(), id.to_string()),
        ])
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

    async fn create_volume(
        &self,
        docker: &Docker,
        name: String,
        id: WorkspaceId,
    ) -> Result<(), ProvisionError> {
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(Self::labels(id)),
            ..Default::default()
        };
        docker
            .create_volume(request)
            .await
            .map(drop)
            .map_err(|e| context(&e, &format!("failed to create volume {name}")))
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

    /// Uploads files into a created (or running) container at `/configs`.
    async fn upload_configs(
        &self,
        docker: &Docker,
        container: &str,
        files: &[(&str, &[u8], u32)],
    ) -> Result<(), ProvisionError> {
        let tar =
            archive::files(files, AGENT_UID).map_err(|e| ProvisionError::Failed(e.to_string()))?;
        let options = UploadToContainerOptions {
            path: "/configs".to_owned(),
            ..Default::default()
        };
        docker
            .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| context(&e, "write /configs"))
    }
}

#[async_trait]
impl Provisioner for DockerProvisioner {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn publishes_agent_url(&self) -> bool {
        true
    }

    async fn start(&self, request: &ProvisionRequest) -> Result<Started, ProvisionError> {
        let docker = self.docker().await?;
        let id = request.workspace_id;
        let name = container_name(id);
        self.ensure_network(docker).await?;
        self.create_volume(docker, config_volume_name(id), id)
            .await?;

        let (env, dropped) = config::build_env(&self.config, request);
        if !dropped.is_empty() {
            tracing::warn!(workspace = %id, keys = ?dropped, "docker: reserved env keys from the request ignored");
        }
        let image = self.config.image_for(&request.runtime);

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
        self.ensure_image(docker, &image, &runtime_hint).await?;
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
                        image: image.clone(),
                        runtime: runtime_hint.clone(),
                        detail: e.to_string(),
                    }
                } else {
                    context(&e, &format!("create {name}"))
                }
            })?;

        // Secrets go in before the agent starts, 0600 and owned by the agent's uid.
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

    async fn stop(
        &self,
        workspace_id: WorkspaceId,
        _instance_id: Option<&str>,
    ) -> Result<(), ProvisionError> {
        let docker = self.docker().await?;
        let name = container_name(workspace_id);
        match docker.remove_container(&name, Some(force())).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_removal_in_progress(&e) => Ok(()),
            Err(e) => Err(context(&e, &format!("force-remove {name}"))),
        }
    }

    async fn running(&self, workspace_id: WorkspaceId, _instance_id: Option<&str>) -> Running {
        let docker = match self.client().await {
            Ok(d) => d,
            Err(e) => return Running::Unknown(e.to_string()),
        };
        match docker
            .inspect_container(&container_name(workspace_id), None)
            .await
        {
            Ok(info) if info.state.as_ref().and_then(|s| s.running) == Some(true) => Running::Yes,
            Ok(_) => Running::No,
            Err(e) if is_not_found(&e) => Running::No,
            Err(e) => Running::Unknown(e.to_string()),
        }
    }

    async fn managed_workspaces(&self) -> Result<Vec<WorkspaceId>, ProvisionError> {
        let docker = self.docker().await?;
        let filters = std::collections::HashMap::from([(
            "label".to_owned(),
            vec![format!("{MANAGED_LABEL}=true")],
        )]);
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| context(&e, "failed to list managed containers"))?;
        let mut ids: Vec<WorkspaceId> = containers
            .into_iter()
            .filter_map(|c| c.labels?.get(WORKSPACE_LABEL)?.parse().ok())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn remove_volume(&self, workspace_id: WorkspaceId) -> Result<(), ProvisionError> {
        let docker = self.docker().await?;
        let remove = |name: String| async move {
            match docker
                .remove_volume(&name, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                Err(e) if !is_not_found(&e) => {
                    Err(context(&e, &format!("failed to remove volume {name}")))
                }
                _ => Ok(()),
            }
        };
        remove(config_volume_name(workspace_id)).await?;
        for name in [
            claude_sessions_volume_name(workspace_id),
            config::workspace_volume_name(workspace_id),
        ] {
            if let Err(e) = remove(name).await {
                tracing::warn!(workspace = %workspace_id, error = %e, "docker: volume left behind");
            }
        }
        Ok(())
    }

    async fn write_auth_token(
        &self,
        workspace_id: WorkspaceId,
        token: &SecretValue,
    ) -> Result<(), ProvisionError> {
        let docker = self.docker().await?;
        let volume = config_volume_name(workspace_id);
        self.create_volume(docker, volume.clone(), workspace_id)
            .await?;
        // A helper container that is created, written through and removed, never started: it
        // needs no shell in the image, and the image is one the backend runs anyway.
        let image = self.config.image_for(Runtime::DEFAULT);
        let body = ContainerCreateBody {
            image: Some(image),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:/configs")]),
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let helper = docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(|e| context(&e, "create the token writer"))?;
        let written = self
            .upload_configs(
                docker,
                &helper.id,
                &[(".auth_token", token.expose().as_bytes(), 0o600)],
            )
            .await;
        let _ = docker.remove_container(&helper.id, Some(force())).await;
        written
    }

    async fn read_file(
        &self,
        workspace_id: WorkspaceId,
        path: &str,
    ) -> Result<Vec<u8>, ProvisionError> {
        let docker = self.docker().await?;
        let options = DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        let mut stream =
            docker.download_from_container(&container_name(workspace_id), Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| context(&e, &format!("read {path}")))?;
            tar.extend_from_slice(&chunk);
        }
        archive::first_file(&tar)
            .map_err(|e| ProvisionError::Failed(format!("read {path}: {e}")))?
            .ok_or_else(|| ProvisionError::NotFound(format!("{path} is not a regular file")))
    }

    async fn refresh_images(
        &self,
        runtimes: &[String],
        recreate: bool,
    ) -> Result<ImageRefresh, RefreshError> {
        self.refresh(runtimes, recreate).await
    }

    async fn console_output(
        &self,
        workspace_id: WorkspaceId,
        _instance_id: Option<&str>,
    ) -> Result<String, ProvisionError> {
        let docker = self.docker().await?;
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: "200".to_owned(),
            ..Default::default()
        };
        let mut stream = docker.logs(&container_name(workspace_id), Some(options));
        let mut out = String::new();
        while let Some(line) = stream.next().await {
            let line = line.map_err(|e| context(&e, "container logs"))?;
            out.push_str(&String::from_utf8_lossy(&line.into_bytes()));
        }
        Ok(out)
    }
}

fn force() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        ..Default::default()
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

/// The HTTP status of a daemon answer, if the error is one.
fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn message(e: &DockerError) -> &str {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// Not found: status 404; the reference's strings as a fallback (spec §1.5.6, §1.14.19).
pub(crate) fn is_not_found(e: &DockerError) -> bool {
    status(e) == Some(404) || is_not_found_message(message(e))
}

fn is_not_found_message(m: &str) -> bool {
    m.contains("No such container") || m.contains("not found")
}

/// Removal already in progress: 409 with the text, or the text alone (spec §1.14.20).
pub(crate) fn is_removal_in_progress(e: &DockerError) -> bool {
    is_removal_in_progress_message(message(e))
}

fn is_removal_in_progress_message(m: &str) -> bool {
    m.contains("removal of container") && m.contains("already in progress")
}

/// The error kind of a daemon failure: transport problems are `Unavailable`, a refused request
/// (4xx) `Rejected` (404 `NotFound`), the rest `Failed`.
fn classify(e: &DockerError) -> ProvisionError {
    context(e, "docker")
}

fn context(e: &DockerError, what: &str) -> ProvisionError {
    let text = format!("{what}: {e}");
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => match status_code {
            404 => ProvisionError::NotFound(text),
            400..=499 => ProvisionError::Rejected(text),
            _ => ProvisionError::Failed(text),
        },
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::RequestTimeoutError
        | DockerError::SocketNotFoundError(_) => ProvisionError::Unavailable(text),
        _ => ProvisionError::Failed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code: code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn classifiers() {
        assert!(is_not_found(&server(404, "whatever")));
        assert!(is_not_found(&server(500, "No such container: ws-abc123")));
        assert!(is_not_found(&server(500, "container not found")));
        for no in ["context deadline exceeded", "EOF", "connection refused", ""] {
            assert!(!is_not_found(&server(500, no)), "{no}");
        }
        assert!(is_removal_in_progress(&server(
            409,
            "removal of container ws-x is already in progress"
        )));
        assert!(!is_removal_in_progress(&server(
            409,
            "image pull is already in progress"
        )));
        assert!(!is_removal_in_progress(&server(404, "No such container")));
        assert!(matches!(
            context(&server(404, "x"), "y"),
            ProvisionError::NotFound(_)
        ));
        assert!(matches!(
            context(&server(409, "x"), "y"),
            ProvisionError::Rejected(_)
        ));
        assert!(matches!(
            context(&server(500, "x"), "y"),
            ProvisionError::Failed(_)
        ));
        assert!(matches!(
            context(&DockerError::RequestTimeoutError, "y"),
            ProvisionError::Unavailable(_)
        ));
    }
}
