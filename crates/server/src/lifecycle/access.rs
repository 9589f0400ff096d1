//! The container access layer as the handlers see it (spec templates §1.0.10, §1.2; provisioner
//! §1.9–1.10): the three-outcome container state, and files and the terminal of a workspace's
//! compute. The only caller of the backend's access methods.

use molecule_domain::{FileRoot, RelPath};
use molecule_provisioner_api::access::{
    DiagnoseStep, FileEntry, Refusal, Target, Terminal, WrittenTo,
};
use molecule_provisioner_api::{ProvisionError, Provisioner, Running};
use molecule_store::Workspace;

use super::Lifecycle;

/// What a workspace's compute is doing, as one lookup decides it (§1.0.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Its compute runs.
    Running,
    /// Its compute is absent or stopped, or there is no backend at all.
    NotRunning,
    /// The backend could not tell (a transient failure, logged).
    Transient,
}

/// Why an access call failed. Handlers turn each into a status and a fixed message; the
/// backend's text is logged here, never answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No backend is configured.
    #[error("no backend")]
    NoBackend,
    /// The compute is not running (or what was asked for is not there).
    #[error("not found")]
    NotFound,
    /// The backend could not be reached or could not tell the compute's state.
    #[error("backend unavailable")]
    Unavailable,
    /// Over a size limit of the access layer.
    #[error("too large")]
    TooLarge,
    /// The path is refused by what the compute holds there.
    #[error("{0}")]
    Refused(Refusal),
    /// This backend has no file or terminal access.
    #[error("unsupported")]
    Unsupported,
    /// Any other failure.
    #[error("failed")]
    Failed,
}

impl AccessError {
    fn from_backend(e: ProvisionError, what: &str) -> Self {
        match e {
            ProvisionError::NotFound(_) => Self::NotFound,
            ProvisionError::TooLarge(_) => Self::TooLarge,
            ProvisionError::Refused(r) => Self::Refused(r),
            ProvisionError::Unsupported(_) => Self::Unsupported,
            ProvisionError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "{what}: backend unavailable");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "{what} failed");
                Self::Failed
            }
        }
    }
}

fn target(ws: &Workspace) -> Target<'_> {
    Target {
        workspace_id: ws.id,
        instance_id: ws.instance_id.as_deref().filter(|i| !i.is_empty()),
        runtime: &ws.runtime,
    }
}

impl Lifecycle {
    fn access_backend(&self) -> Result<&dyn Provisioner, AccessError> {
        self.inner.backend.as_deref().ok_or(AccessError::NoBackend)
    }

    /// The state of a workspace's compute: the single source of truth of the access routes.
    /// No backend is [`ContainerState::NotRunning`]; a transient failure is logged.
    pub async fn container_state(&self, ws: &Workspace) -> ContainerState {
        let Some(backend) = self.inner.backend.as_ref() else {
            return ContainerState::NotRunning;
        };
        match backend
            .running(ws.id, ws.instance_id.as_deref().filter(|i| !i.is_empty()))
            .await
        {
            Running::Yes => ContainerState::Running,
            Running::No => ContainerState::NotRunning,
            Running::Unknown(cause) => {
                tracing::warn!(workspace = %ws.id, error = %cause, "container state unknown");
                ContainerState::Transient
            }
        }
    }

    /// Lists `dir` under `root` in the workspace's running compute.
    pub async fn list_files(
        &self,
        ws: &Workspace,
        root: FileRoot,
        dir: Option<&RelPath>,
        depth: u8,
    ) -> Result<Vec<FileEntry>, AccessError> {
        self.access_backend()?
            .list_files(&target(ws), root, dir, depth)
            .await
            .map_err(|e| AccessError::from_backend(e, "list files"))
    }

    /// Reads one file under `root` in the workspace's running compute.
    pub async fn read_file_at(
        &self,
        ws: &Workspace,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<Vec<u8>, AccessError> {
        self.access_backend()?
            .read_path(&target(ws), root, path)
            .await
            .map_err(|e| AccessError::from_backend(e, "read file"))
    }

    /// Writes files under `root`: into the running compute, or into its storage when stopped.
    pub async fn write_files(
        &self,
        ws: &Workspace,
        root: FileRoot,
        files: &[(RelPath, Vec<u8>)],
    ) -> Result<WrittenTo, AccessError> {
        self.access_backend()?
            .write_files(&target(ws), root, files)
            .await
            .map_err(|e| AccessError::from_backend(e, "write files"))
    }

    /// Deletes a file or directory under `root` (what is not there counts as deleted).
    pub async fn delete_file(
        &self,
        ws: &Workspace,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<(), AccessError> {
        self.access_backend()?
            .delete_path(&target(ws), root, path)
            .await
            .map_err(|e| AccessError::from_backend(e, "delete file"))
    }

    /// Opens an interactive shell in the workspace's running compute.
    pub async fn open_terminal(&self, ws: &Workspace) -> Result<Terminal, AccessError> {
        self.access_backend()?
            .open_terminal(&target(ws))
            .await
            .map_err(|e| AccessError::from_backend(e, "open terminal"))
    }

    /// The steps of opening a shell, each with its outcome.
    pub async fn diagnose_terminal(
        &self,
        ws: &Workspace,
    ) -> Result<Vec<DiagnoseStep>, AccessError> {
        self.access_backend()?
            .diagnose_terminal(&target(ws))
            .await
            .map_err(|e| AccessError::from_backend(e, "diagnose terminal"))
    }
}
