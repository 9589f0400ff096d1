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
//! ```no_run
//! # async fn demo() -> Result<(), molecule_provisioner_api::ProvisionError> {
//! use molecule_provisioner_api::ec2::{Ec2Config, Ec2Provisioner};
//! let ec2 = Ec2Provisioner::new(Ec2Config::from_env()).await?;
//! # let _ = ec2; Ok(()) }
//! ```

pub mod config;
mod errors;
pub mod user_data;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    Instance, InstanceAttributeName, InstanceMetadataOptionsRequest, InstanceType, ResourceType,
    Tag, TagSpecification, VolumeType,
};
use base64::Engine;
use molecule_domain::WorkspaceId;

pub use self::config::{Ec2Config, StaticKeys, StopPolicy, TierShape};
use self::errors::{Fault, fault, from_fault, to_error};
use self::user_data::{BootstrapDocument, MAX_USER_DATA};
pub use crate::names::MANAGED_LABEL;
use crate::names::container_name;
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

/// What a launch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The instance id (`i-…`), stored on the workspace row.
    pub instance_id: String,
    /// The EC2 state name right after launch (usually `pending`).
    pub state: String,
    /// The private IPv4 address, when assigned.
    pub private_ip: Option<String>,
    /// The public IPv4 address, when assigned.
    pub public_ip: Option<String>,
}

/// One instance as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// The instance id.
    pub instance_id: String,
    /// The EC2 state name (`pending`, `running`, `stopping`, `stopped`, `shutting-down`,
    /// `terminated`).
    pub state: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// The instance type.
    pub instance_type: Option<String>,
    /// The AMI it runs.
    pub image_id: Option<String>,
    /// Its subnet.
    pub subnet_id: Option<String>,
    /// Its security groups.
    pub security_group_ids: Vec<String>,
    /// Its key pair.
    pub key_name: Option<String>,
    /// The private IPv4 address.
    pub private_ip: Option<String>,
    /// The public IPv4 address.
    pub public_ip: Option<String>,
}

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
    config: Ec2Config,
    leaks: Mutex<BTreeMap<String, LeakSuspect>>,
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
        Ok(Self {
            client: Client::new(&sdk),
            config,
            leaks: Mutex::new(BTreeMap::new()),
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

    fn leaks_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LeakSuspect>> {
        self.leaks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tags of a workspace's instance (and its volumes).
    fn tags(&self, request: &ProvisionRequest) -> Vec<Tag> {
        let id = request.workspace_id;
        let name: String = format!("{} {}", container_name(id), request.name)
            .chars()
            .take(255)
            .collect();
        let mut pairs = vec![
            (TAG_WORKSPACE, id.to_string()),
            (MANAGED_LABEL, "true".to_owned()),
            ("Name", name),
            (TAG_RUNTIME, request.runtime.clone()),
            ("Role", "workspace".to_owned()),
        ];
        if let Some(org) = &self.config.org_id {
            pairs.push((TAG_ORG, org.clone()));
        }
        if let Some(env) = &self.config.env_stamp {
            pairs.push((TAG_ENV, env.clone()));
        }
        pairs
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// Launches the instance of a workspace (spec §1.8 "start"), after terminating any live
    /// instance left with its tag (best effort: a start replaces, as on Docker).
    pub async fn launch(&self, request: &ProvisionRequest) -> Result<Launched, ProvisionError> {
        let id = request.workspace_id;
        let ami = self.config.ami_for(&request.runtime).ok_or_else(|| {
            ProvisionError::Rejected(format!(
                "no AMI configured for runtime {:?} (MOLECULE_EC2_AMI)",
                request.runtime
            ))
        })?;
        match self.workspace_instances(id, false).await {
            Ok(old) => {
                for instance in old {
                    if let Err(e) = self.terminate(id, &instance.instance_id).await {
                        tracing::warn!(workspace = %id, instance = %instance.instance_id, error = %e, "ec2: old instance not terminated before the new start");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(workspace = %id, error = %e, "ec2: cannot look for old instances before the start");
            }
        }

        let script = BootstrapDocument::for_request(&self.config, request).render();
        if script.len() > MAX_USER_DATA {
            return Err(ProvisionError::Rejected(format!(
                "user-data of {} bytes is over EC2's {MAX_USER_DATA}",
                script.len()
            )));
        }
        let shape = self.config.shape_for(request.tier, &request.runtime);
        let tags = self.tags(request);
        let mut run = self
            .client
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::from(shape.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .user_data(base64::engine::general_purpose::STANDARD.encode(script))
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&self.config.root_device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(shape.volume_gb)
                            .volume_type(VolumeType::Gp3)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            )
            .set_subnet_id(self.config.subnet_id.clone())
            .set_key_name(self.config.key_name.clone());
        if !self.config.security_group_ids.is_empty() {
            run = run.set_security_group_ids(Some(self.config.security_group_ids.clone()));
        }
        if let Some(profile) = &self.config.instance_profile {
            let spec = IamInstanceProfileSpecification::builder();
            let spec = if profile.starts_with("arn:") {
                spec.arn(profile)
            } else {
                spec.name(profile)
            };
            run = run.iam_instance_profile(spec.build());
        }
        let output = run.send().await.map_err(|e| to_error(&e, "RunInstances"))?;
        let instance = output.instances().first().ok_or_else(|| {
            ProvisionError::Failed("ec2 RunInstances: the answer holds no instance".into())
        })?;
        let info = info(instance);
        if info.instance_id.is_empty() {
            return Err(ProvisionError::Failed(
                "ec2 RunInstances: the answer holds no instance id".into(),
            ));
        }
        tracing::info!(workspace = %id, instance = %info.instance_id, ami, instance_type = %shape.instance_type, "ec2: workspace instance launched");
        Ok(Launched {
            instance_id: info.instance_id,
            state: info.state,
            private_ip: info.private_ip,
            public_ip: info.public_ip,
        })
    }

    /// One instance by id; `None` when EC2 does not know it.
    pub async fn instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<InstanceInfo>, ProvisionError> {
        let answer = self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await;
        match answer {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .map(info)
                .find(|i| i.instance_id == instance_id)),
            Err(e) if fault(&e) == Fault::NotFound => Ok(None),
            Err(e) => Err(to_error(&e, "DescribeInstances")),
        }
    }

    /// The instances tagged with a workspace (and this tenant, when configured); only live ones
    /// unless `include_gone` (then `shutting-down` and `terminated` ones too).
    pub async fn workspace_instances(
        &self,
        id: WorkspaceId,
        include_gone: bool,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        let mut filters = vec![tag_filter(TAG_WORKSPACE, &id.to_string())];
        if !include_gone {
            filters.push(state_filter());
        }
        self.describe(filters).await
    }

    /// `DescribeInstances` with filters (plus the tenant's), every page.
    async fn describe(
        &self,
        mut filters: Vec<Filter>,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        if let Some(org) = &self.config.org_id {
            filters.push(tag_filter(TAG_ORG, org));
        }
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| to_error(&e, "DescribeInstances"))?;
            found.extend(
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .map(info),
            );
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }

    /// The user-data of an instance, decoded (`None` when it has none).
    pub async fn user_data(&self, instance_id: &str) -> Result<Option<String>, ProvisionError> {
        let out = self
            .client
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| to_error(&e, "DescribeInstanceAttribute"))?;
        Ok(out
            .user_data()
            .and_then(|v| v.value())
            .map(decode_base64_text))
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

    /// The instance ids a call about a workspace is about: the stored one, else the live
    /// instances with its tag.
    async fn targets(
        &self,
        workspace_id: WorkspaceId,
        instance_id: Option<&str>,
    ) -> Result<Vec<String>, ProvisionError> {
        match instance_id.map(str::trim).filter(|i| !i.is_empty()) {
            Some(i) => Ok(vec![i.to_owned()]),
            None => Ok(self
                .workspace_instances(workspace_id, false)
                .await?
                .into_iter()
                .map(|i| i.instance_id)
                .collect()),
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
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

fn state_filter() -> Filter {
    Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE_STATES.iter().map(|s| (*s).to_owned()).collect()))
        .build()
}

fn info(i: &Instance) -> InstanceInfo {
    InstanceInfo {
        instance_id: i.instance_id().unwrap_or_default().to_owned(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default(),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
            .collect(),
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
        image_id: i.image_id().map(str::to_owned),
        subnet_id: i.subnet_id().map(str::to_owned),
        security_group_ids: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        key_name: i.key_name().map(str::to_owned),
        private_ip: i.private_ip_address().map(str::to_owned),
        public_ip: i.public_ip_address().map(str::to_owned),
    }
}

/// Base64 text as UTF-8 (lossy), or the text itself when it is not base64.
fn decode_base64_text(s: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_text() {
        assert_eq!(decode_base64_text("aGVsbG8="), "hello");
        assert_eq!(decode_base64_text("not base64!"), "not base64!");
    }
}
