//! The interactive shell of a Docker workspace (spec provisioner §1.9, local path): an exec of
//! `/bin/bash` (or `/bin/sh` when the image has no bash) with a TTY and stdin attached in the
//! container `ws-<id12>`, its output pumped into the [`Terminal`]'s channels, window sizes
//! applied with the exec resize API.

use std::time::Instant;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{ContainerArchiveInfoOptions, ResizeExecOptions};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::DockerProvisioner;
use super::errors::{context, is_not_found};
use crate::ProvisionError;
use crate::access::{DiagnoseStep, Target, Terminal, TerminalInput};
use crate::names::container_name;

/// Chunks of terminal traffic that may wait in each direction.
const TERMINAL_BUFFER: usize = 64;

impl DockerProvisioner {
    /// `open_terminal` of the Docker backend.
    pub(super) async fn open_shell(&self, target: &Target<'_>) -> Result<Terminal, ProvisionError> {
        let docker = self.docker().await?;
        let container = self
            .running_container(docker, target)
            .await?
            .ok_or_else(|| ProvisionError::NotFound("container not running".to_owned()))?;
        let has_bash = docker
            .get_container_archive_info(
                &container,
                Some(ContainerArchiveInfoOptions {
                    path: "/bin/bash".to_owned(),
                }),
            )
            .await
            .is_ok();
        let shell = if has_bash { "/bin/bash" } else { "/bin/sh" };
        let exec = docker
            .create_exec(
                &container,
                CreateExecOptions {
                    cmd: Some(vec![shell.to_owned()]),
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(true),
                    env: Some(vec!["TERM=xterm-256color".to_owned()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| context(&e, "create the shell exec"))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| context(&e, "start the shell exec"))?
        else {
            return Err(ProvisionError::Failed("the shell exec detached".to_owned()));
        };
        let (to_shell, mut from_client) = mpsc::channel::<TerminalInput>(TERMINAL_BUFFER);
        let resizer = docker.clone();
        let exec_id = exec.id.clone();
        let (to_client, from_shell) = mpsc::channel::<Vec<u8>>(TERMINAL_BUFFER);
        tokio::spawn(async move {
            while let Some(item) = output.next().await {
                let Ok(chunk) = item else { break };
                if to_client.send(chunk.into_bytes().to_vec()).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(message) = from_client.recv().await {
                match message {
                    TerminalInput::Data(bytes) => {
                        if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                            break;
                        }
                    }
                    TerminalInput::Resize(size) => {
                        let options = ResizeExecOptions {
                            h: i32::from(size.rows),
                            w: i32::from(size.cols),
                        };
                        if let Err(e) = resizer.resize_exec(&exec_id, options).await {
                            tracing::debug!(error = %e, "docker: terminal resize failed");
                        }
                    }
                }
            }
            // The client is gone: end the shell's input, which closes its TTY.
            let _ = input.shutdown().await;
        });
        Ok(Terminal {
            input: to_shell,
            output: from_shell,
        })
    }

    /// `diagnose_terminal` of the Docker backend: `docker-available`, `container-found`,
    /// `container-running`, stopping at the first failure.
    pub(super) async fn diagnose_shell(
        &self,
        target: &Target<'_>,
    ) -> Result<Vec<DiagnoseStep>, ProvisionError> {
        let mut steps = Vec::new();
        let started = Instant::now();
        let docker = match self.client().await {
            Ok(d) => {
                steps.push(step("docker-available", started, None, None));
                d
            }
            Err(e) => {
                tracing::warn!(error = %e, "terminal diagnose: docker unavailable");
                steps.push(step(
                    "docker-available",
                    started,
                    Some("Docker daemon not reachable".to_owned()),
                    None,
                ));
                return Ok(steps);
            }
        };
        let started = Instant::now();
        let name = container_name(target.workspace_id);
        let info = match docker.inspect_container(&name, None).await {
            Ok(info) => {
                steps.push(step("container-found", started, None, Some(name.clone())));
                info
            }
            Err(e) => {
                let error = if is_not_found(&e) {
                    "no such container".to_owned()
                } else {
                    tracing::warn!(error = %e, "terminal diagnose: inspect failed");
                    "could not inspect the container".to_owned()
                };
                steps.push(step(
                    "container-found",
                    started,
                    Some(error),
                    Some(format!("tried: {name}")),
                ));
                return Ok(steps);
            }
        };
        let started = Instant::now();
        let state = info.state.unwrap_or_default();
        let status = state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let error = (state.running != Some(true)).then(|| "container is not running".to_owned());
        steps.push(step("container-running", started, error, Some(status)));
        Ok(steps)
    }
}

fn step(
    name: &str,
    started: Instant,
    error: Option<String>,
    detail: Option<String>,
) -> DiagnoseStep {
    DiagnoseStep {
        name: name.to_owned(),
        ok: error.is_none(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        error,
        detail,
    }
}
