//! The AWS EC2 backend (spec provisioner §1.8, Decision 5), over aws-sdk-ec2.
//!
//! A workspace is one instance, launched by `RunInstances` with the AMI of its runtime, the
//! instance type and root volume of its tier, the configured subnet, security groups, key pair
//! and instance profile, tags ([`TAG_WORKSPACE`], [`MANAGED_LABEL`], `Name`, `Runtime`,
//! `Role=workspace`, `OrgID`) and user-data ([`user_data::BootstrapDocument`], no secrets).
//! The instance id it returns is stored on the workspace row and is the key of every later
//! call: the running check is `DescribeInstances` of that id (only `running` is running; API
//! and transport errors are *unknown*), stop is `TerminateInstances`, retried with backoff, a
//! final failure logged as `LEAK-SUSPECT` and kept in [`Ec2Provisioner::leak_suspects`].
//! Without a stored id (a row whose id was never saved, or the orphan sweep) the instances are
//! found by their workspace tag. The SDK's own retries are off: the policies here are explicit.
//!
//! Files and the terminal (the access methods of [`Provisioner`]) go over EC2 Instance
//! Connect and SSH: a throwaway ed25519 key per operation or session, pushed with
//! `SendSSHPublicKey` for [`SshSettings::os_user`], then an in-process SSH client (russh) to
//! the instance's address ([`SshSettings`]); see `remote_files` and `terminal`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), molecule_provisioner_api::ProvisionError> {
//! use molecule_provisioner_api::ec2::{Ec2Config, Ec2Provisioner};
//! let ec2 = Ec2Provisioner::new(Ec2Config::from_env()).await?;
//! # let _ = ec2; Ok(()) }
//! ```

pub mod config;
mod errors;
mod instances;
mod launch;
pub mod remote_files;
mod session;
pub mod ssh_settings;
pub mod terminal;
pub mod user_data;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{Credentials, Region};
use molecule_domain::WorkspaceId;
use parking_lot::{Mutex, MutexGuard};

pub use self::config::{Ec2Config, StaticKeys, StopPolicy, TierShape};
use self::errors::{Fault, fault, from_fault, to_error};
pub use self::instances::InstanceInfo;
use self::instances::{decode_base64_text, state_filter, tag_filter};
pub use self::launch::Launched;
use self::session::SeenHostKeys;
pub use self::ssh_settings::{SshAddress, SshSettings};
use crate::access::{DiagnoseStep, FileEntry, FileRoot, RelPath, Target, Terminal, WrittenTo};
pub use crate::names::MANAGED_LABEL;
use crate::{BackendKind, ProvisionError, ProvisionRequest, Provisioner, Running, Started};

/// The tag carrying the full workspace id (the control plane's key).
pub const TAG_WORKSPACE: &str = "WorkspaceID";
/// The tag carrying the tenant id.
pub const TAG_ORG: &str = "OrgID";
/// The tag carrying the runtime.
pub const TAG_RUNTIME: &str = "Runtime";
/// The tag carrying the `MOLECULE_ENV` stamp.
pub const TAG_ENV: &str = "MoleculeEnv";
/// The states in which an instance still exists (may run, cost or be started again).
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// An instance whose termination finally failed: it may still run and cost money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakSuspect {
    /// The workspace it belonged to.
    pub workspace_id: WorkspaceId,
    /// The instance.
    pub instance_id: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last error.
    pub last_error: String,
}

/// The EC2 backend. Cheap to share: hold it in an `Arc<dyn Provisioner>`.
pub struct Ec2Provisioner {
    client: Client,
    eic: aws_sdk_ec2instanceconnect::Client,
    config: Ec2Config,
    leaks: Mutex<BTreeMap<String, LeakSuspect>>,
    host_keys: SeenHostKeys,
}

impl std::fmt::Debug for Ec2Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Provisioner")
            .field("region", &self.config.region)
            .field("endpoint", &self.config.endpoint)
            .finish()
    }
}

impl Ec2Provisioner {
    /// A backend for this configuration. Nothing is contacted here. Credentials come from
    /// [`Ec2Config::static_keys`] or the standard AWS provider chain; TLS is rustls (ring).
    /// Fails when no AMI is configured at all.
    pub async fn new(config: Ec2Config) -> Result<Self, ProvisionError> {
        if !config.has_ami() {
            return Err(ProvisionError::Rejected(
                "no AMI configured: set MOLECULE_EC2_AMI (or MOLECULE_EC2_AMI_<RUNTIME>)".into(),
            ));
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_timeout(config.operation_timeout)
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        if let Some(keys) = &config.static_keys {
            loader = loader.credentials_provider(Credentials::new(
                keys.access_key_id.clone(),
                keys.secret_access_key.expose().to_owned(),
                None,
                None,
                "molecule-static",
            ));
        }
        let sdk = loader.load().await;
        let mut eic = aws_sdk_ec2instanceconnect::config::Builder::from(&sdk);
        if let Some(endpoint) = &config.eic_endpoint {
            eic = eic.endpoint_url(endpoint.clone());
        }
        Ok(Self {
            client: Client::new(&sdk),
            eic: aws_sdk_ec2instanceconnect::Client::from_conf(eic.build()),
            config,
            leaks: Mutex::new(BTreeMap::new()),
            host_keys: SeenHostKeys::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Ec2Config {
        &self.config
    }

    /// The SDK client, configured as the backend uses it (for tools and tests that need an
    /// EC2 call the backend does not make).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The instances whose termination finally failed (cleared when a later terminate of the
    /// same instance succeeds). Each was logged at error level as `LEAK-SUSPECT`.
    pub fn leak_suspects(&self) -> Vec<LeakSuspect> {
        self.leaks_map().values().cloned().collect()
    }

    fn leaks_map(&self) -> MutexGuard<'_, BTreeMap<String, LeakSuspect>> {
        self.leaks.lock()
    }

    /// Terminates one instance: `TerminateInstances`, retried by the stop policy; an instance
    /// EC2 does not know counts as terminated. A final failure is logged as `LEAK-SUSPECT`,
    /// recorded in [`Ec2Provisioner::leak_suspects`] and returned. With
    /// [`StopPolicy::wait_terminated`], waits for `terminated` until that deadline.
    pub async fn terminate(
        &self,
        workspace_id: WorkspaceId,
        instance_id: &str,
    ) -> Result<(), ProvisionError> {
        let policy = self.config.stop;
        let attempts = policy.attempts.max(1);
        let mut backoff = policy.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self
                .client
                .terminate_instances()
                .instance_ids(instance_id)
                .send()
                .await;
            let e = match answer {
                Ok(_) => break,
                Err(e) if fault(&e) == Fault::NotFound => break,
                Err(e) => e,
            };
            let kind = fault(&e);
            let text = to_error(&e, "TerminateInstances").to_string();
            if attempt < attempts {
                tracing::warn!(workspace = %workspace_id, instance = instance_id, attempt, error = %text, "ec2: terminate failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                continue;
            }
            tracing::error!(
                workspace_id = %workspace_id,
                instance_id,
                attempts,
                last_err = %text,
                "LEAK-SUSPECT ec2 TerminateInstances failed: the instance may still run"
            );
            self.leaks_map().insert(
                instance_id.to_owned(),
                LeakSuspect {
                    workspace_id,
                    instance_id: instance_id.to_owned(),
                    attempts,
                    last_error: text.clone(),
                },
            );
            return Err(from_fault(
                kind,
                format!("terminate {instance_id} failed after {attempts} attempt(s): {text}"),
            ));
        }
        self.leaks_map().remove(instance_id);
        if let Some(deadline) = policy.wait_terminated {
            self.wait_terminated(instance_id, deadline).await?;
        }
        Ok(())
    }

    /// Polls until the instance is `terminated` (or unknown), for at most `deadline`.
    async fn wait_terminated(
        &self,
        instance_id: &str,
        deadline: Duration,
    ) -> Result<(), ProvisionError> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match self.instance(instance_id).await {
                Ok(None) => return Ok(()),
                Ok(Some(i)) if i.state == "terminated" => return Ok(()),
                Ok(Some(_)) | Err(_) if tokio::time::Instant::now() >= until => {
                    return Err(ProvisionError::Unavailable(format!(
                        "ec2: {instance_id} not terminated within {}s",
                        deadline.as_secs()
                    )));
                }
                Ok(Some(_)) | Err(_) => tokio::time::sleep(self.config.stop.poll_every).await,
            }
        }
    }
}

#[async_trait]
impl Provisioner for Ec2Provisioner {
    fn kind(&self) -> BackendKind {
        BackendKind::Ec2
    }

    fn delivers_credentials(&self) -> bool {
        false
    }

    async fn start(&self, request: &ProvisionRequest) -> Result<Started, ProvisionError> {
        let launched = self.launch(request).await?;
        // The agent reports its own URL when it registers (spec §1.8).
        Ok(Started {
            agent_url: None,
            instance_id: Some(launched.instance_id),
        })
    }

    async fn stop(
        &self,
        workspace_id: WorkspaceId,
        instance_id: Option<&str>,
    ) -> Result<(), ProvisionError> {
        let targets = self.targets(workspace_id, instance_id).await?;
        let mut first_error = None;
        for target in targets {
            if let Err(e) = self.terminate(workspace_id, &target).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn running(&self, workspace_id: WorkspaceId, instance_id: Option<&str>) -> Running {
        let found = match instance_id.map(str::trim).filter(|i| !i.is_empty()) {
            Some(i) => self.instance(i).await.map(|i| i.into_iter().collect()),
            None => self.workspace_instances(workspace_id, false).await,
        };
        match found {
            Ok(instances) if instances.iter().any(|i| i.state == "running") => Running::Yes,
            Ok(_) => Running::No,
            Err(e) => Running::Unknown(e.to_string()),
        }
    }

    async fn managed_workspaces(&self) -> Result<Vec<WorkspaceId>, ProvisionError> {
        let instances = self
            .describe(vec![tag_filter(MANAGED_LABEL, "true"), state_filter()])
            .await?;
        let mut ids: Vec<WorkspaceId> = instances
            .iter()
            .filter_map(|i| i.tags.get(TAG_WORKSPACE)?.parse().ok())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn console_output(
        &self,
        workspace_id: WorkspaceId,
        instance_id: Option<&str>,
    ) -> Result<String, ProvisionError> {
        let target = match instance_id.map(str::trim).filter(|i| !i.is_empty()) {
            Some(i) => i.to_owned(),
            None => self
                .workspace_instances(workspace_id, true)
                .await?
                .into_iter()
                .next()
                .map(|i| i.instance_id)
                .ok_or_else(|| {
                    ProvisionError::NotFound(format!("no instance of workspace {workspace_id}"))
                })?,
        };
        let out = self
            .client
            .get_console_output()
            .instance_id(&target)
            .send()
            .await
            .map_err(|e| to_error(&e, "GetConsoleOutput"))?;
        Ok(out.output().map(decode_base64_text).unwrap_or_default())
    }

    async fn list_files(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        dir: Option<&RelPath>,
        depth: u8,
    ) -> Result<Vec<FileEntry>, ProvisionError> {
        self.remote_list(target, root, dir, depth).await
    }

    async fn read_path(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<Vec<u8>, ProvisionError> {
        self.remote_read(target, root, path).await
    }

    async fn write_files(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        files: &[(RelPath, Vec<u8>)],
    ) -> Result<WrittenTo, ProvisionError> {
        self.remote_write(target, root, files).await
    }

    async fn delete_path(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<(), ProvisionError> {
        self.remote_delete(target, root, path).await
    }

    async fn open_terminal(&self, target: &Target<'_>) -> Result<Terminal, ProvisionError> {
        self.remote_terminal(target).await
    }

    async fn diagnose_terminal(
        &self,
        target: &Target<'_>,
    ) -> Result<Vec<DiagnoseStep>, ProvisionError> {
        Ok(self.remote_diagnose(target).await)
    }
}
