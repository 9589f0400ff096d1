//! Starting, checking and stopping the compute a workspace runs on.
//!
//! The [`Provisioner`] trait is the one interface between the platform and a backend (local
//! Docker, AWS EC2). It depends only on `molecule-domain`, so other tools can drive a backend
//! without the server or a database. Backends live behind features:
//!
//! - `docker`: [`docker::DockerProvisioner`], containers on the local Docker engine (bollard).
//! - `ec2`: [`ec2::Ec2Provisioner`], instances on AWS EC2 or a compatible API (aws-sdk-ec2).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use molecule_domain::{Tier, WorkspaceAccess, WorkspaceId};

pub mod access;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "ec2")]
pub mod ec2;
pub mod names;
pub mod progress;

/// Which backend a provisioner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Containers on the local Docker engine.
    Docker,
    /// Instances on AWS EC2.
    Ec2,
    /// A test double or another implementation.
    Other,
}

/// A value that must not reach a log: `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the backend that injects it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<{} bytes>)", self.0.len())
    }
}

/// Everything a backend needs to start a workspace, built by the lifecycle service from the
/// whole workspace row (never a subset).
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// Role given to the agent.
    pub role: Option<String>,
    /// Tier.
    pub tier: Tier,
    /// Runtime name.
    pub runtime: String,
    /// Parent workspace.
    pub parent_id: Option<WorkspaceId>,
    /// Model the agent should use.
    pub model: Option<String>,
    /// Template the workspace was made from.
    pub template: Option<String>,
    /// Files for the agent's config root (`/configs`): the template's files, or a generated
    /// `config.yaml`. Written before the agent starts; the secrets are written after them and
    /// win on a collision. Empty on restarts (the config storage keeps what it has).
    pub config_files: Vec<(molecule_domain::RelPath, Vec<u8>)>,
    /// Host directory to mount.
    pub workspace_dir: Option<String>,
    /// Access mode of that directory.
    pub workspace_access: WorkspaceAccess,
    /// URL the agent uses to reach the platform.
    pub platform_url: String,
    /// Environment for the agent (secrets included), in injection order.
    pub env: BTreeMap<String, SecretValue>,
    /// The workspace auth token the agent registers with.
    pub auth_token: Option<SecretValue>,
    /// The bearer the platform presents when calling the agent.
    pub platform_inbound_secret: Option<SecretValue>,
    /// A one-time token the agent's first registration exchanges for its auth token, for
    /// backends that cannot deliver `auth_token` privately (EC2 user-data is readable on the
    /// box): valid once, until the provision timeout; only its hash is stored.
    pub bootstrap_token: Option<SecretValue>,
}

/// What a successful start produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// Where the agent's A2A endpoint will answer, when the backend knows it now.
    pub agent_url: Option<String>,
    /// The backend's id of the compute (container id, EC2 instance id).
    pub instance_id: Option<String>,
}

/// The answer of a running check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Running {
    /// The compute is running.
    Yes,
    /// The compute is gone or stopped.
    No,
    /// The backend could not tell (a transient error). Never a reason to mark a workspace
    /// offline or to restart it.
    Unknown(String),
}

/// What went wrong in a backend call. The message is for logs, never for response bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// The backend cannot be reached now (daemon down, network, throttling).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the request as invalid (bad image, bad parameters).
    #[error("backend rejected the request: {0}")]
    Rejected(String),
    /// Any other failure.
    #[error("backend failure: {0}")]
    Failed(String),
    /// The image to run is not available (not local and could not be pulled).
    #[error("image {image:?} not found (verify GHCR visibility for {runtime}): {detail}")]
    ImageNotFound {
        /// The image reference.
        image: String,
        /// The runtime tag the image was chosen for.
        runtime: String,
        /// What the daemon said.
        detail: String,
    },
    /// The thing asked about does not exist (a file in a container, a container).
    #[error("not found: {0}")]
    NotFound(String),
    /// This backend does not offer the operation.
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
    /// What was asked for is over a size limit of the access layer (a file over
    /// [`access::MAX_READ_BYTES`], a listing over [`access::MAX_LIST_ENTRIES`]).
    #[error("too large: {0}")]
    TooLarge(String),
    /// The access layer refused a path it was given (it passed the domain's guards, but what
    /// the compute holds there does not allow the operation).
    #[error("path refused: {0}")]
    Refused(access::Refusal),
}

/// What an image refresh did (spec provisioner §1.12): runtime names whose image was pulled
/// or failed to pull, and the names of the containers force-removed so that the health sweep
/// recreates them from the new image. Failure reasons are logged, never returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRefresh {
    /// Runtimes whose image was pulled.
    pub pulled: Vec<String>,
    /// Runtimes whose image could not be pulled.
    pub failed: Vec<String>,
    /// Containers removed for recreation.
    pub recreated: Vec<String>,
}

/// An image refresh that stopped part way (the containers could not be listed), with what it
/// had done by then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image refresh incomplete: {cause}")]
pub struct RefreshError {
    /// What was done before the failure.
    pub partial: ImageRefresh,
    /// Why it stopped.
    #[source]
    pub cause: ProvisionError,
}

/// A backend that runs workspaces. The lifecycle service is its only caller in the server.
#[async_trait]
pub trait Provisioner: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Whether [`Provisioner::start`] hands the request's auth token and inbound secret to the
    /// agent (Docker: files in `/configs`). When false (EC2: user-data is readable, so it holds
    /// no lasting secret), the caller issues no auth token before the start but a one-time
    /// [`ProvisionRequest::bootstrap_token`], and the agent receives both credentials in the
    /// answer to its first `POST /registry/register`, which consumes the bootstrap token.
    fn delivers_credentials(&self) -> bool {
        true
    }

    /// Whether [`Provisioner::start`] answers the agent's URL (Docker: the published loopback
    /// port). The platform then dispatches there and ignores the URL the agent registers with
    /// (an address seen from inside its container). Default: false (the agent's own URL).
    fn publishes_agent_url(&self) -> bool {
        false
    }

    /// Starts (or replaces) the compute of a workspace.
    async fn start(&self, request: &ProvisionRequest) -> Result<Started, ProvisionError>;

    /// [`Provisioner::start`], reporting its steps ([`progress::Step`]) to `progress`. The
    /// default reports the whole start as the `container` step; a backend with finer steps
    /// (Docker: image, volume, container) overrides it.
    async fn start_with_progress(
        &self,
        request: &ProvisionRequest,
        progress: &dyn progress::Progress,
    ) -> Result<Started, ProvisionError> {
        progress::step(progress, progress::Step::Container, self.start(request)).await
    }

    /// Stops and removes the compute of a workspace. Stopping what is already gone succeeds.
    async fn stop(
        &self,
        workspace_id: WorkspaceId,
        instance_id: Option<&str>,
    ) -> Result<(), ProvisionError>;

    /// Whether the compute of a workspace is running.
    async fn running(&self, workspace_id: WorkspaceId, instance_id: Option<&str>) -> Running;

    /// Removes the storage a workspace keeps between starts (Docker: the config volume and the
    /// Claude session volume). Call it only after a successful [`Provisioner::stop`]: the
    /// storage is still in use otherwise. Removing what is already gone succeeds. Backends
    /// without such storage succeed without doing anything.
    async fn remove_volume(&self, workspace_id: WorkspaceId) -> Result<(), ProvisionError> {
        let _ = workspace_id;
        Ok(())
    }

    /// Writes the workspace auth token where the agent reads it (Docker: `/configs/.auth_token`
    /// in the config volume, mode 0600) before the compute starts, so a restarted agent never
    /// reads a stale token. Backends that deliver the token otherwise succeed without doing
    /// anything.
    async fn write_auth_token(
        &self,
        workspace_id: WorkspaceId,
        token: &SecretValue,
    ) -> Result<(), ProvisionError> {
        let _ = (workspace_id, token);
        Ok(())
    }

    /// Reads one file from the running compute of a workspace, bytes unchanged (the
    /// reference's `exec_read`). A missing file is [`ProvisionError::NotFound`].
    async fn read_file(
        &self,
        workspace_id: WorkspaceId,
        path: &str,
    ) -> Result<Vec<u8>, ProvisionError> {
        let _ = (workspace_id, path);
        Err(ProvisionError::Unsupported("read_file"))
    }

    /// The workspaces that have compute managed by this backend (running or not), by the
    /// managed label. Used by the orphan sweeper.
    async fn managed_workspaces(&self) -> Result<Vec<WorkspaceId>, ProvisionError> {
        Ok(Vec::new())
    }

    /// Pulls the latest image of each runtime and, with `recreate`, force-removes the
    /// workspace containers running one of the refreshed images (they are not started again
    /// here: the health sweep sees them gone and restarts them). Backends without images
    /// answer [`ProvisionError::Unsupported`].
    async fn refresh_images(
        &self,
        runtimes: &[String],
        recreate: bool,
    ) -> Result<ImageRefresh, RefreshError> {
        let _ = (runtimes, recreate);
        Err(RefreshError {
            partial: ImageRefresh::default(),
            cause: ProvisionError::Unsupported("refresh_images"),
        })
    }

    /// Lists `dir` (the root itself when `None`) to `depth` levels (1: direct children, at
    /// most [`access::MAX_LIST_DEPTH`]), leaving out [`access::LIST_EXCLUDED`]. A missing
    /// directory is an empty list.
    async fn list_files(
        &self,
        target: &access::Target<'_>,
        root: access::FileRoot,
        dir: Option<&access::RelPath>,
        depth: u8,
    ) -> Result<Vec<access::FileEntry>, ProvisionError> {
        let _ = (target, root, dir, depth);
        Err(ProvisionError::Unsupported("list_files"))
    }

    /// Reads one file under a root, bytes unchanged. A missing file is
    /// [`ProvisionError::NotFound`].
    async fn read_path(
        &self,
        target: &access::Target<'_>,
        root: access::FileRoot,
        path: &access::RelPath,
    ) -> Result<Vec<u8>, ProvisionError> {
        let _ = (target, root, path);
        Err(ProvisionError::Unsupported("read_path"))
    }

    /// Writes files under a root (parents created), into the running compute or, when it is
    /// stopped and the backend keeps storage, into that storage. Each path is written as that
    /// literal name.
    async fn write_files(
        &self,
        target: &access::Target<'_>,
        root: access::FileRoot,
        files: &[(access::RelPath, Vec<u8>)],
    ) -> Result<access::WrittenTo, ProvisionError> {
        let _ = (target, root, files);
        Err(ProvisionError::Unsupported("write_files"))
    }

    /// Deletes one file or directory (recursively) under a root. Deleting what is not there
    /// succeeds.
    async fn delete_path(
        &self,
        target: &access::Target<'_>,
        root: access::FileRoot,
        path: &access::RelPath,
    ) -> Result<(), ProvisionError> {
        let _ = (target, root, path);
        Err(ProvisionError::Unsupported("delete_path"))
    }

    /// Opens an interactive shell with a TTY in the running compute. A stopped compute is
    /// [`ProvisionError::NotFound`].
    async fn open_terminal(
        &self,
        target: &access::Target<'_>,
    ) -> Result<access::Terminal, ProvisionError> {
        let _ = target;
        Err(ProvisionError::Unsupported("open_terminal"))
    }

    /// Runs the steps of [`Provisioner::open_terminal`] one by one and reports each, stopping
    /// at the first failure.
    async fn diagnose_terminal(
        &self,
        target: &access::Target<'_>,
    ) -> Result<Vec<access::DiagnoseStep>, ProvisionError> {
        let _ = target;
        Err(ProvisionError::Unsupported("diagnose_terminal"))
    }

    /// The console output (logs) of a workspace's compute.
    async fn console_output(
        &self,
        workspace_id: WorkspaceId,
        instance_id: Option<&str>,
    ) -> Result<String, ProvisionError> {
        let _ = (workspace_id, instance_id);
        Err(ProvisionError::Unsupported("console_output"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = SecretValue::new("hunter2");
        assert_eq!(format!("{s:?}"), "SecretValue(<7 bytes>)");
        assert_eq!(s.expose(), "hunter2");
    }
}
