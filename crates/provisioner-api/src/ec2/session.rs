//! One SSH session onto a workspace instance: a throwaway ed25519 key made in-process, pushed
//! with EC2 Instance Connect `SendSSHPublicKey` (valid 60 s on the instance), then an
//! in-process SSH client (russh) that logs in with it. Host keys are checked against the pins
//! of [`super::SshSettings::host_keys`], else trusted on first use per instance.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect, client};

use super::Ec2Provisioner;
use super::errors::to_error;
use super::ssh_settings::SshAddress;
use crate::ProvisionError;
use crate::access::TerminalInput;

/// Stderr kept of a remote command (for logs).
const STDERR_LIMIT: usize = 64 * 1024;

/// Host key fingerprints seen per instance (trust on first use).
pub(super) type SeenHostKeys = Arc<Mutex<BTreeMap<String, String>>>;

/// A throwaway ed25519 key for one operation or terminal session.
pub(super) struct SessionKey(PrivateKey);

impl SessionKey {
    /// A fresh key from the system's randomness.
    pub(super) fn generate(comment: &str) -> Result<Self, ProvisionError> {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| ProvisionError::Failed("no system randomness for an ssh key".into()))?;
        let pair = Ed25519Keypair::from_seed(&seed);
        seed.fill(0);
        PrivateKey::new(KeypairData::Ed25519(pair), comment)
            .map(Self)
            .map_err(|e| ProvisionError::Failed(format!("ssh key: {e}")))
    }

    /// The public key in OpenSSH form (`ssh-ed25519 AAAA… comment`).
    pub(super) fn public_openssh(&self) -> Result<String, ProvisionError> {
        self.0
            .public_key()
            .to_openssh()
            .map_err(|e| ProvisionError::Failed(format!("ssh key: {e}")))
    }
}

/// What a remote command answered.
#[derive(Debug, Default)]
pub(super) struct ExecOutput {
    /// Its exit status; `None` when it ended without one (killed by a signal).
    pub status: Option<u32>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error (at most [`STDERR_LIMIT`] bytes).
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// The standard error as one short line, for logs and error values.
    pub(super) fn stderr_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let text = text.trim();
        text.chars().take(300).collect()
    }
}

/// Checks the host key the instance shows.
pub(super) struct HostKeyCheck {
    instance_id: String,
    pins: Vec<String>,
    seen: SeenHostKeys,
    shown: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key: &PublicKey = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                tracing::warn!(instance = %self.instance_id, "ec2 ssh: host certificates are not accepted");
                return Ok(false);
            }
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        *self.shown.lock() = Some(fingerprint.clone());
        Ok(accept_host_key(
            &self.instance_id,
            &fingerprint,
            &self.pins,
            &self.seen,
        ))
    }
}

/// The host key decision: a pinned list wins; otherwise the first key an instance shows is
/// remembered and a different one later is refused.
pub(super) fn accept_host_key(
    instance_id: &str,
    fingerprint: &str,
    pins: &[String],
    seen: &SeenHostKeys,
) -> bool {
    if !pins.is_empty() {
        let ok = pins.iter().any(|p| p == fingerprint);
        if !ok {
            tracing::warn!(
                instance = instance_id,
                fingerprint,
                "ec2 ssh: host key is not pinned: refused"
            );
        }
        return ok;
    }
    let mut seen = seen.lock();
    match seen.get(instance_id) {
        Some(known) if known == fingerprint => true,
        Some(known) => {
            tracing::warn!(instance = instance_id, known = %known, shown = fingerprint, "ec2 ssh: host key changed: refused");
            false
        }
        None => {
            tracing::info!(
                instance = instance_id,
                fingerprint,
                "ec2 ssh: first host key of instance (trusted on first use)"
            );
            seen.insert(instance_id.to_owned(), fingerprint.to_owned());
            true
        }
    }
}

/// A logged-in SSH session.
pub(super) struct SshSession {
    handle: client::Handle<HostKeyCheck>,
    /// The host key's fingerprint.
    pub host_key: String,
}

fn ssh_error(what: &str, e: &russh::Error) -> ProvisionError {
    ProvisionError::Unavailable(format!("ssh {what}: {e}"))
}

impl Ec2Provisioner {
    /// The running instance's SSH address (`host:port`): the endpoint override, else its
    /// private or public IP. A missing or stopped instance is [`ProvisionError::NotFound`].
    pub(super) async fn ssh_address(&self, instance_id: &str) -> Result<String, ProvisionError> {
        let info = self
            .instance(instance_id)
            .await?
            .ok_or_else(|| ProvisionError::NotFound(format!("instance {instance_id} not found")))?;
        if info.state != "running" {
            return Err(ProvisionError::NotFound(format!(
                "instance {instance_id} is {}",
                info.state
            )));
        }
        let ssh = &self.config.ssh;
        if let Some(endpoint) = &ssh.endpoint {
            return Ok(endpoint.clone());
        }
        let ip = match ssh.address {
            SshAddress::Private => info.private_ip,
            SshAddress::Public => info.public_ip,
        };
        let ip = ip.ok_or_else(|| {
            ProvisionError::Unavailable(format!(
                "instance {instance_id} has no {:?} address",
                ssh.address
            ))
        })?;
        Ok(format!("{ip}:{}", ssh.port))
    }

    /// Pushes the key for the configured OS user (EC2 Instance Connect, valid 60 s).
    pub(super) async fn push_key(
        &self,
        instance_id: &str,
        key: &SessionKey,
    ) -> Result<(), ProvisionError> {
        let out = self
            .eic
            .send_ssh_public_key()
            .instance_id(instance_id)
            .instance_os_user(&self.config.ssh.os_user)
            .ssh_public_key(key.public_openssh()?)
            .send()
            .await
            .map_err(|e| to_error(&e, "SendSSHPublicKey"))?;
        if out.success() {
            Ok(())
        } else {
            Err(ProvisionError::Failed(
                "ec2 SendSSHPublicKey: not successful".into(),
            ))
        }
    }

    /// Connects to `address` and logs in with the pushed key, within the connect budget.
    pub(super) async fn connect(
        &self,
        instance_id: &str,
        address: &str,
        key: &SessionKey,
    ) -> Result<SshSession, ProvisionError> {
        let ssh = &self.config.ssh;
        let config = Arc::new(client::Config {
            keepalive_interval: Some(std::time::Duration::from_secs(15)),
            keepalive_max: 3,
            ..client::Config::default()
        });
        let shown = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            instance_id: instance_id.to_owned(),
            pins: ssh.host_keys.clone(),
            seen: self.host_keys.clone(),
            shown: shown.clone(),
        };
        let login = async {
            let mut handle =
                client::connect(config, address, check)
                    .await
                    .map_err(|e| match e {
                        russh::Error::UnknownKey => ProvisionError::Failed(format!(
                            "ssh connect to {address}: host key refused"
                        )),
                        e => ssh_error(&format!("connect to {address}"), &e),
                    })?;
            let auth = handle
                .authenticate_publickey(
                    ssh.os_user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key.0.clone()), None),
                )
                .await
                .map_err(|e| ssh_error("authenticate", &e))?;
            if !auth.success() {
                return Err(ProvisionError::Failed(format!(
                    "ssh: {address} refused the pushed key for {}",
                    ssh.os_user
                )));
            }
            Ok(handle)
        };
        let handle = tokio::time::timeout(ssh.connect_timeout, login)
            .await
            .map_err(|_| {
                ProvisionError::Unavailable(format!(
                    "ssh connect to {address}: timed out after {}s",
                    ssh.connect_timeout.as_secs()
                ))
            })??;
        let host_key = shown.lock().clone().unwrap_or_default();
        Ok(SshSession { handle, host_key })
    }
}

impl SshSession {
    /// Runs `command` (through the login shell), with `stdin` as its input, and collects its
    /// output; stdout over `limit` bytes is [`ProvisionError::Rejected`].
    pub(super) async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        limit: usize,
    ) -> Result<ExecOutput, ProvisionError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| ssh_error("open channel", &e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| ssh_error("exec", &e))?;
        if !stdin.is_empty() {
            channel
                .data(stdin)
                .await
                .map_err(|e| ssh_error("send input", &e))?;
        }
        channel.eof().await.map_err(|e| ssh_error("send eof", &e))?;
        let mut out = ExecOutput::default();
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if out.stdout.len().saturating_add(data.len()) > limit {
                        let _ = channel.close().await;
                        return Err(ProvisionError::Rejected(format!(
                            "remote output larger than {limit} bytes"
                        )));
                    }
                    out.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    let room = STDERR_LIMIT.saturating_sub(out.stderr.len());
                    out.stderr.extend_from_slice(&data[..data.len().min(room)]);
                }
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(out)
    }

    /// An interactive login shell with a PTY (`xterm-256color`, 80×24, resizable). Input,
    /// output and window changes are pumped by a task that owns the session and ends it when
    /// the shell exits or the input side is dropped.
    pub(super) async fn shell(self) -> Result<crate::access::Terminal, ProvisionError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| ssh_error("open channel", &e))?;
        channel
            .request_pty(true, "xterm-256color", 80, 24, 0, 0, &[])
            .await
            .map_err(|e| ssh_error("request pty", &e))?;
        channel
            .request_shell(true)
            .await
            .map_err(|e| ssh_error("request shell", &e))?;
        let (input, mut input_rx) = tokio::sync::mpsc::channel::<TerminalInput>(64);
        let (output_tx, output) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let (mut read, write) = channel.split();
        let handle = self.handle;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = read.wait() => match msg {
                        Some(ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. }) => {
                            if output_tx.send(data.to_vec()).await.is_err() {
                                break;
                            }
                        }
                        Some(ChannelMsg::Close) | None => break,
                        Some(_) => {}
                    },
                    message = input_rx.recv() => match message {
                        Some(TerminalInput::Data(bytes)) => {
                            if write.data(&bytes[..]).await.is_err() {
                                break;
                            }
                        }
                        Some(TerminalInput::Resize(size)) => {
                            let (cols, rows) = (u32::from(size.cols), u32::from(size.rows));
                            if let Err(e) = write.window_change(cols, rows, 0, 0).await {
                                tracing::debug!(error = %e, "ssh: terminal resize failed");
                            }
                        }
                        None => break,
                    },
                }
            }
            let _ = write.close().await;
            let _ = handle
                .disconnect(Disconnect::ByApplication, "session ended", "en")
                .await;
        });
        Ok(crate::access::Terminal { input, output })
    }

    /// Ends the session.
    pub(super) async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "done", "en")
            .await;
    }
}
