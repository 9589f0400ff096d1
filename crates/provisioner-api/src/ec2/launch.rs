//! Launching a workspace's instance (spec §1.8 "start"): `RunInstances` with the AMI of its
//! runtime, the shape of its tier, the configured network and profile, its tags and user-data.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag, TagSpecification, VolumeType,
};
use base64::Engine;

use super::errors::to_error;
use super::instances::info;
use super::user_data::{BootstrapDocument, MAX_USER_DATA};
use super::{Ec2Provisioner, TAG_ENV, TAG_ORG, TAG_RUNTIME, TAG_WORKSPACE};
use crate::names::{MANAGED_LABEL, container_name};
use crate::{ProvisionError, ProvisionRequest};

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

impl Ec2Provisioner {
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
}
