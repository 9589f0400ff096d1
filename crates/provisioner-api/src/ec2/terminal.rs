//! The terminal on a workspace instance (spec provisioner §1.9 "Remote path"): a login shell
//! with a PTY over the same key push and SSH login as the files, and its diagnosis, step by
//! step.

use std::future::Future;
use std::time::Instant;

use super::Ec2Provisioner;
use super::session::SessionKey;
use crate::ProvisionError;
use crate::access::{DiagnoseStep, Target, Terminal};

/// The marker the probe step echoes.
pub const PROBE_MARKER: &str = "MOLECULE_TERMINAL_PROBE_OK";

/// Runs one step, records it, and answers its value when it passed.
async fn step<T>(
    steps: &mut Vec<DiagnoseStep>,
    name: &str,
    op: impl Future<Output = Result<(T, Option<String>), ProvisionError>>,
) -> Option<T> {
    let started = Instant::now();
    let result = op.await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (value, error, detail) = match result {
        Ok((value, detail)) => (Some(value), None, detail),
        Err(e) => (None, Some(e.to_string()), None),
    };
    steps.push(DiagnoseStep {
        name: name.to_owned(),
        ok: value.is_some(),
        duration_ms,
        error,
        detail,
    });
    value
}

impl Ec2Provisioner {
    pub(super) async fn remote_terminal(
        &self,
        target: &Target<'_>,
    ) -> Result<Terminal, ProvisionError> {
        let session = self
            .within_budget("terminal", self.open_session(target, "molecule-terminal"))
            .await?;
        session.shell().await
    }

    pub(super) async fn remote_diagnose(&self, target: &Target<'_>) -> Vec<DiagnoseStep> {
        let mut steps = Vec::new();
        let budget = self.config.ssh.operation_timeout;
        let run = self.diagnose_steps(target, &mut steps);
        if tokio::time::timeout(budget, run).await.is_err() {
            steps.push(DiagnoseStep {
                name: "timeout".into(),
                ok: false,
                duration_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                error: Some(format!("diagnosis timed out after {}s", budget.as_secs())),
                detail: None,
            });
        }
        steps
    }

    /// `instance-running`, `generate-key`, `send-ssh-public-key`, `connect`, `ssh-probe`,
    /// stopping at the first failure.
    async fn diagnose_steps(&self, target: &Target<'_>, steps: &mut Vec<DiagnoseStep>) {
        let Some((instance_id, address)) = step(steps, "instance-running", async {
            let instance_id = self
                .targets(target.workspace_id, target.instance_id)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ProvisionError::NotFound("no instance".into()))?;
            let address = self.ssh_address(&instance_id).await?;
            let detail = format!("instance={instance_id} address={address}");
            Ok::<_, ProvisionError>(((instance_id, address), Some(detail)))
        })
        .await
        else {
            return;
        };
        let Some(key) = step(steps, "generate-key", async {
            Ok::<_, ProvisionError>((
                SessionKey::generate("molecule-terminal")?,
                Some("ed25519".to_owned()),
            ))
        })
        .await
        else {
            return;
        };
        let user = self.config.ssh.os_user.clone();
        if step(steps, "send-ssh-public-key", async {
            self.push_key(&instance_id, &key).await?;
            Ok::<_, ProvisionError>(((), Some(format!("user={user}"))))
        })
        .await
        .is_none()
        {
            return;
        }
        let Some(session) = step(steps, "connect", async {
            let session = self.connect(&instance_id, &address, &key).await?;
            let detail = format!("host key {}", session.host_key);
            Ok::<_, ProvisionError>((session, Some(detail)))
        })
        .await
        else {
            return;
        };
        let _ = step(steps, "ssh-probe", async {
            let out = session
                .exec(&format!("echo {PROBE_MARKER}"), &[], 64 * 1024)
                .await?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status == Some(0) && stdout.contains(PROBE_MARKER) {
                Ok(((), None))
            } else {
                Err(ProvisionError::Failed(format!(
                    "probe: exit {:?}, output {:?} {:?}",
                    out.status,
                    stdout.trim(),
                    out.stderr_text()
                )))
            }
        })
        .await;
        session.close().await;
    }
}
