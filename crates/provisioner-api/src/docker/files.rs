//! Files in a workspace's container (spec provisioner §1.10, templates §1.2) through the Docker
//! archive API, and one argv `rm` for deletes: no shell, no command built from a path.
//!
//! Symbolic links are never followed. Before any read, listing, write or delete, each
//! directory between the root and the path is looked at with the archive API's stat (which
//! does not follow the last piece of the path it is given): a link there is
//! [`Refusal::Symlink`], so the daemon never resolves one on our behalf (Docker resolves links
//! inside the container's file system, which could leave the root). A read or listing of a
//! path that is itself a link is refused too; a write replaces a link at the path by the file
//! (the daemon's untar removes it first) and a delete removes the link, not its target.
//! Archives are read with links as plain entries.
//!
//! A stopped workspace's `/configs` is its config volume: writes and deletes go through a
//! short-lived helper container made from the workspace's own image (always local: nothing is
//! pulled) with only that volume mounted and no network. A write's helper is created and never
//! started (the archive API works on created containers); a delete's helper runs `rm` with the
//! path as one argument. Both are removed afterwards, whatever happened.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, CreateContainerOptions, DownloadFromContainerOptions,
    StartContainerOptions, UploadToContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use molecule_domain::{FileRoot, RelPath};

use super::errors::{context, is_not_found};
use super::{AGENT_UID, DockerProvisioner, archive, force};
use crate::ProvisionError;
use crate::access::{FileEntry, MAX_LIST_ENTRIES, MAX_READ_BYTES, Refusal, Target, WrittenTo};
use crate::names::{config_volume_name, container_name};

/// Go's `os.FileMode` bits, as the archive API's stat reports them.
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
/// Every type bit of a Go file mode (dir, symlink, device, pipe, socket, char device,
/// irregular): none set means a regular file.
const MODE_TYPE: u32 =
    MODE_DIR | MODE_SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);

/// How many archive chunks a listing may have waiting for its tar reader.
const LISTING_BUFFER: usize = 16;

/// What is at a path, without following a link there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    Dir,
    File(u64),
    Symlink,
    Other,
}

/// The absolute path of `path` (or the root itself) inside the container.
fn absolute(root: FileRoot, path: Option<&RelPath>) -> String {
    match path {
        Some(p) => format!("{}/{}", root.as_str(), p),
        None => root.as_str().to_owned(),
    }
}

impl DockerProvisioner {
    /// The name of the workspace's container when it runs; `None` when it is stopped or gone;
    /// an error when the daemon cannot tell.
    pub(super) async fn running_container(
        &self,
        docker: &Docker,
        target: &Target<'_>,
    ) -> Result<Option<String>, ProvisionError> {
        let name = container_name(target.workspace_id);
        match docker.inspect_container(&name, None).await {
            Ok(info) if info.state.as_ref().and_then(|s| s.running) == Some(true) => Ok(Some(name)),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(super::errors::context(&e, "inspect container")),
        }
    }

    /// What is at `abs` in `container`, the last piece not followed.
    async fn stat(
        &self,
        docker: &Docker,
        container: &str,
        abs: &str,
    ) -> Result<Kind, ProvisionError> {
        let options = ContainerArchiveInfoOptions {
            path: abs.to_owned(),
        };
        match docker
            .get_container_archive_info(container, Some(options))
            .await
        {
            Ok(stat) if stat.file_mode & MODE_SYMLINK != 0 => Ok(Kind::Symlink),
            Ok(stat) if stat.file_mode & MODE_DIR != 0 => Ok(Kind::Dir),
            Ok(stat) if stat.file_mode & MODE_TYPE == 0 => {
                Ok(Kind::File(u64::try_from(stat.size).unwrap_or(0)))
            }
            Ok(_) => Ok(Kind::Other),
            Err(e) if is_not_found(&e) => Ok(Kind::Missing),
            Err(e) => Err(context(&e, "stat")),
        }
    }

    /// Checks the directories between the root and `path` (a link is refused, a missing one
    /// makes the path missing, a file one is [`Refusal::NotADirectory`]) and answers what is
    /// at `path` itself. `seen` remembers directories already checked in this operation.
    async fn walk(
        &self,
        docker: &Docker,
        container: &str,
        root: FileRoot,
        path: &RelPath,
        seen: &mut BTreeMap<String, Kind>,
    ) -> Result<Kind, ProvisionError> {
        let parts: Vec<&str> = path.components().collect();
        let mut abs = root.as_str().to_owned();
        for (i, part) in parts.iter().enumerate() {
            abs.push('/');
            abs.push_str(part);
            let kind = match seen.get(&abs) {
                Some(kind) => *kind,
                None => {
                    let kind = self.stat(docker, container, &abs).await?;
                    seen.insert(abs.clone(), kind);
                    kind
                }
            };
            if i + 1 == parts.len() {
                return Ok(kind);
            }
            match kind {
                Kind::Dir => {}
                Kind::Missing => return Ok(Kind::Missing),
                Kind::Symlink => return Err(ProvisionError::Refused(Refusal::Symlink)),
                Kind::File(_) | Kind::Other => {
                    return Err(ProvisionError::Refused(Refusal::NotADirectory));
                }
            }
        }
        Ok(Kind::Missing)
    }

    /// `list_files` of the Docker backend: the archive of the directory, scanned as it streams
    /// (contents are read past, never kept).
    pub(super) async fn list_in_container(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        dir: Option<&RelPath>,
        depth: u8,
    ) -> Result<Vec<FileEntry>, ProvisionError> {
        let docker = self.docker().await?;
        let container = self
            .running_container(docker, target)
            .await?
            .ok_or_else(|| ProvisionError::NotFound("container not running".to_owned()))?;
        let kind = match dir {
            Some(d) => {
                self.walk(docker, &container, root, d, &mut BTreeMap::new())
                    .await?
            }
            None => self.stat(docker, &container, root.as_str()).await?,
        };
        match kind {
            Kind::Dir => {}
            Kind::Missing => return Ok(Vec::new()),
            Kind::Symlink => return Err(ProvisionError::Refused(Refusal::Symlink)),
            Kind::File(_) | Kind::Other => {
                return Err(ProvisionError::Refused(Refusal::NotADirectory));
            }
        }
        let abs = absolute(root, dir);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(LISTING_BUFFER);
        let scan = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx: &mut rx,
                buf: Vec::new(),
                pos: 0,
            };
            archive::listing(reader, depth, MAX_LIST_ENTRIES)
        });
        let options = DownloadFromContainerOptions { path: abs.clone() };
        let mut stream = docker.download_from_container(&container, Some(options));
        while let Some(chunk) = stream.next().await {
            let item = chunk
                .map(|c| c.to_vec())
                .map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            // The scanner stopped (too many entries, a bad archive): its answer says why.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        match scan.await {
            Ok(Ok(entries)) => Ok(entries),
            Ok(Err(archive::ListingError::TooMany(n))) => Err(ProvisionError::TooLarge(format!(
                "listing {abs}: more than {n} entries"
            ))),
            Ok(Err(archive::ListingError::Io(e))) => {
                Err(ProvisionError::Failed(format!("list {abs}: {e}")))
            }
            Err(e) => Err(ProvisionError::Failed(format!("list {abs}: {e}"))),
        }
    }

    /// `read_path` of the Docker backend: a regular file's bytes, at most
    /// [`MAX_READ_BYTES`].
    pub(super) async fn read_in_container(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<Vec<u8>, ProvisionError> {
        let docker = self.docker().await?;
        let container = self
            .running_container(docker, target)
            .await?
            .ok_or_else(|| ProvisionError::NotFound("container not running".to_owned()))?;
        let abs = absolute(root, Some(path));
        match self
            .walk(docker, &container, root, path, &mut BTreeMap::new())
            .await?
        {
            Kind::File(size) if size > MAX_READ_BYTES => {
                return Err(ProvisionError::TooLarge(format!("{abs}: {size} bytes")));
            }
            Kind::File(_) => {}
            Kind::Missing => return Err(ProvisionError::NotFound(abs)),
            Kind::Dir => return Err(ProvisionError::Refused(Refusal::IsDirectory)),
            Kind::Symlink => return Err(ProvisionError::Refused(Refusal::Symlink)),
            Kind::Other => return Err(ProvisionError::Refused(Refusal::NotAFile)),
        }
        let options = DownloadFromContainerOptions { path: abs.clone() };
        let mut stream = docker.download_from_container(&container, Some(options));
        // The file, its header and the archive's padding; a file that grew past the limit
        // since the stat is cut off here.
        let limit = usize::try_from(MAX_READ_BYTES).unwrap_or(usize::MAX) + 64 * 1024;
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| context(&e, &format!("read {abs}")))?;
            tar.extend_from_slice(&chunk);
            if tar.len() > limit {
                return Err(ProvisionError::TooLarge(format!("{abs}: over the limit")));
            }
        }
        let bytes = archive::first_file(&tar)
            .map_err(|e| ProvisionError::Failed(format!("read {abs}: {e}")))?
            .ok_or(ProvisionError::Refused(Refusal::NotAFile))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_READ_BYTES {
            return Err(ProvisionError::TooLarge(format!("{abs}: over the limit")));
        }
        Ok(bytes)
    }

    /// `write_files` of the Docker backend: one archive (parents 0755, files 0644, owned by
    /// the agent) uploaded into the running container, or into the config volume through a
    /// created helper container when the workspace is stopped.
    pub(super) async fn write_in_container(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        files: &[(RelPath, Vec<u8>)],
    ) -> Result<WrittenTo, ProvisionError> {
        let docker = self.docker().await?;
        let tar = archive::tree(files, AGENT_UID).map_err(|e| match e {
            archive::TreeError::Refused(r) => ProvisionError::Refused(r),
            archive::TreeError::Io(e) => ProvisionError::Failed(format!("archive: {e}")),
        })?;
        if let Some(container) = self.running_container(docker, target).await? {
            self.upload_checked(docker, &container, root, files, tar)
                .await?;
            return Ok(WrittenTo::Container);
        }
        if root != FileRoot::Configs {
            return Err(ProvisionError::NotFound("container not running".to_owned()));
        }
        let helper = self.helper(docker, target, None).await?;
        let written = self.upload_checked(docker, &helper, root, files, tar).await;
        let _ = docker.remove_container(&helper, Some(force())).await;
        written.map(|()| WrittenTo::Volume)
    }

    async fn upload_checked(
        &self,
        docker: &Docker,
        container: &str,
        root: FileRoot,
        files: &[(RelPath, Vec<u8>)],
        tar: Vec<u8>,
    ) -> Result<(), ProvisionError> {
        let mut seen = BTreeMap::new();
        for (path, _) in files {
            match self.walk(docker, container, root, path, &mut seen).await? {
                Kind::Dir => return Err(ProvisionError::Refused(Refusal::IsDirectory)),
                Kind::Other => return Err(ProvisionError::Refused(Refusal::NotAFile)),
                Kind::Missing | Kind::File(_) | Kind::Symlink => {}
            }
        }
        let options = UploadToContainerOptions {
            path: root.as_str().to_owned(),
            ..Default::default()
        };
        docker
            .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| context(&e, &format!("write into {}", root.as_str())))
    }

    /// `delete_path` of the Docker backend: `rm -rf -- <abs>` as an argv, run by exec in the
    /// running container or by a helper container on the config volume.
    pub(super) async fn delete_in_container(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<(), ProvisionError> {
        let docker = self.docker().await?;
        let abs = absolute(root, Some(path));
        let argv = vec![
            "rm".to_owned(),
            "-rf".to_owned(),
            "--".to_owned(),
            abs.clone(),
        ];
        if let Some(container) = self.running_container(docker, target).await? {
            if self
                .walk(docker, &container, root, path, &mut BTreeMap::new())
                .await?
                == Kind::Missing
            {
                return Ok(());
            }
            return self.exec_checked(docker, &container, argv).await;
        }
        if root != FileRoot::Configs {
            return Err(ProvisionError::NotFound("container not running".to_owned()));
        }
        let helper = self.helper(docker, target, Some(argv)).await?;
        let done = self.run_helper(docker, &helper, root, path).await;
        let _ = docker.remove_container(&helper, Some(force())).await;
        done
    }

    async fn run_helper(
        &self,
        docker: &Docker,
        helper: &str,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<(), ProvisionError> {
        if self
            .walk(docker, helper, root, path, &mut BTreeMap::new())
            .await?
            == Kind::Missing
        {
            return Ok(());
        }
        docker
            .start_container(helper, None::<StartContainerOptions>)
            .await
            .map_err(|e| context(&e, "start the delete helper"))?;
        let mut wait = docker.wait_container(helper, None::<WaitContainerOptions>);
        while let Some(status) = wait.next().await {
            match status {
                Ok(s) if s.status_code != 0 => {
                    return Err(ProvisionError::Failed(format!(
                        "rm exited {}",
                        s.status_code
                    )));
                }
                Ok(_) => {}
                Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => {
                    return Err(ProvisionError::Failed(format!("rm exited {code}")));
                }
                Err(e) => return Err(context(&e, "wait for the delete helper")),
            }
        }
        Ok(())
    }

    /// Runs `argv` in `container` as root (no shell) and fails unless it exits 0.
    async fn exec_checked(
        &self,
        docker: &Docker,
        container: &str,
        argv: Vec<String>,
    ) -> Result<(), ProvisionError> {
        let exec = docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(argv),
                    // As root, like the daemon's uploads: the agent may not own every
                    // directory of its root (a fresh volume's `/configs` is root's).
                    user: Some("0:0".to_owned()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| context(&e, "create exec"))?;
        if let StartExecResults::Attached { mut output, .. } = docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| context(&e, "start exec"))?
        {
            while let Some(item) = output.next().await {
                item.map_err(|e| context(&e, "exec output"))?;
            }
        }
        let inspect = docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| context(&e, "inspect exec"))?;
        match inspect.exit_code {
            Some(0) => Ok(()),
            code => Err(ProvisionError::Failed(format!("exec exited {code:?}"))),
        }
    }

    /// A helper container on the workspace's config volume (created, not started), from the
    /// workspace's image, without network; `argv` replaces its entrypoint (run as root, so
    /// that files the agent's entrypoint made as root can be deleted too).
    async fn helper(
        &self,
        docker: &Docker,
        target: &Target<'_>,
        argv: Option<Vec<String>>,
    ) -> Result<String, ProvisionError> {
        let volume = config_volume_name(target.workspace_id);
        self.create_volume(docker, volume.clone(), target.workspace_id)
            .await?;
        let body = ContainerCreateBody {
            image: Some(self.config.image_for(target.runtime)),
            user: argv.as_ref().map(|_| "0:0".to_owned()),
            entrypoint: argv,
            cmd: Some(Vec::new()),
            labels: Some(Self::labels(target.workspace_id)),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:/configs")]),
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map(|c| c.id)
            .map_err(|e| context(&e, "create the volume helper"))
    }
}

/// A blocking reader over archive chunks sent by the async side (the listing's tar reader runs
/// on a blocking thread).
struct ChannelReader<'a> {
    rx: &'a mut tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
