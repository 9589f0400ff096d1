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
mod errors;
mod files;
mod refresh;
mod start;
mod terminal;

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RemoveVolumeOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;
use molecule_domain::{Runtime, WorkspaceId};
use tokio::sync::{Mutex, OnceCell};

pub use self::config::{DockerConfig, PullPolicy, TierLimits};
use self::errors::{classify, context, is_not_found, is_removal_in_progress};
use crate::access::{DiagnoseStep, FileEntry, FileRoot, RelPath, Target, Terminal, WrittenTo};
use crate::names::{
    MANAGED_LABEL, WORKSPACE_LABEL, claude_sessions_volume_name, config_volume_name, container_name,
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

    /// Uploads files into a created (or running) container at `/configs`.
    async fn upload_configs(
        &self,
        docker: &Docker,
        container: &str,
        files: &[(&str, &[u8], u32)],
    ) -> Result<(), ProvisionError> {
        let tar =
            archive::files(files, AGENT_UID).map_err(|e| ProvisionError::Failed(e.to_string()))?;
        upload_to_configs(docker, container, tar).await
    }
}

/// Unpacks a tar into a created (or running) container's `/configs`.
async fn upload_to_configs(
    docker: &Docker,
    container: &str,
    tar: Vec<u8>,
) -> Result<(), ProvisionError> {
    let options = UploadToContainerOptions {
        path: "/configs".to_owned(),
        ..Default::default()
    };
    docker
        .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
        .await
        .map_err(|e| context(&e, "write /configs"))
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
        self.launch(request, &crate::progress::NoProgress).await
    }

    async fn start_with_progress(
        &self,
        request: &ProvisionRequest,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Started, ProvisionError> {
        self.launch(request, progress).await
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

    async fn list_files(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        dir: Option<&RelPath>,
        depth: u8,
    ) -> Result<Vec<FileEntry>, ProvisionError> {
        self.list_in_container(target, root, dir, depth).await
    }

    async fn read_path(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<Vec<u8>, ProvisionError> {
        self.read_in_container(target, root, path).await
    }

    async fn write_files(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        files: &[(RelPath, Vec<u8>)],
    ) -> Result<WrittenTo, ProvisionError> {
        self.write_in_container(target, root, files).await
    }

    async fn delete_path(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<(), ProvisionError> {
        self.delete_in_container(target, root, path).await
    }

    async fn open_terminal(&self, target: &Target<'_>) -> Result<Terminal, ProvisionError> {
        self.open_shell(target).await
    }

    async fn diagnose_terminal(
        &self,
        target: &Target<'_>,
    ) -> Result<Vec<DiagnoseStep>, ProvisionError> {
        self.diagnose_shell(target).await
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
