//! Finding instances: by id, by workspace tag (`DescribeInstances`, every page), and what the
//! backend reads of them.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Instance, InstanceAttributeName};
use base64::Engine;
use molecule_domain::WorkspaceId;

use super::errors::{Fault, fault, to_error};
use super::{Ec2Provisioner, LIVE_STATES, TAG_ORG, TAG_WORKSPACE};
use crate::ProvisionError;

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

impl Ec2Provisioner {
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
    pub(super) async fn describe(
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

    /// The instance ids a call about a workspace is about: the stored one, else the live
    /// instances with its tag.
    pub(super) async fn targets(
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

pub(super) fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

pub(super) fn state_filter() -> Filter {
    Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE_STATES.iter().map(|s| (*s).to_owned()).collect()))
        .build()
}

pub(super) fn info(i: &Instance) -> InstanceInfo {
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
pub(super) fn decode_base64_text(s: &str) -> String {
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
