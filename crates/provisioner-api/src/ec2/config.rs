//! The EC2 backend's configuration and its pure decisions (AMI per runtime, instance type and
//! root volume per tier, the image the box runs), without any AWS call.

use std::collections::BTreeMap;
use std::time::Duration;

use molecule_domain::{Runtime, Tier};

use super::ssh_settings::SshSettings;
use crate::SecretValue;

/// The image registry used when none is configured (spec provisioner §1.2).
pub const DEFAULT_REGISTRY: &str = "ghcr.io/molecule-ai";
/// The region used when none is configured (spec provisioner §1.2).
pub const DEFAULT_REGION: &str = "us-east-2";

/// What an instance of one tier gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierShape {
    /// EC2 instance type, e.g. `t3.medium`.
    pub instance_type: String,
    /// Root volume size in GiB.
    pub volume_gb: i32,
}

impl TierShape {
    fn new(instance_type: &str, volume_gb: i32) -> Self {
        Self {
            instance_type: instance_type.to_owned(),
            volume_gb,
        }
    }
}

/// Static AWS keys, for tools and tests that must not consult the default provider chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticKeys {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: SecretValue,
}

/// How a stop retries `TerminateInstances` and waits for the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Pause after the first failed attempt; doubled after each further one.
    pub first_backoff: Duration,
    /// When set, a stop waits until the instance is `terminated`, for at most this long.
    pub wait_terminated: Option<Duration>,
    /// Pause between two state checks while waiting.
    pub poll_every: Duration,
}

impl Default for StopPolicy {
    /// Three attempts, 1 s then 2 s apart (spec §1.7.4); no wait for `terminated`.
    fn default() -> Self {
        Self {
            attempts: 3,
            first_backoff: Duration::from_secs(1),
            wait_terminated: None,
            poll_every: Duration::from_secs(2),
        }
    }
}

/// Everything the EC2 backend needs. [`Ec2Config::from_env`] reads the process environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Config {
    /// AWS region.
    pub region: String,
    /// Endpoint override (moto, LocalStack or another EC2-compatible API); `None`: AWS.
    pub endpoint: Option<String>,
    /// Explicit keys; `None`: the standard AWS provider chain (env, profile, web identity,
    /// ECS/IMDS).
    pub static_keys: Option<StaticKeys>,
    /// AMI of every runtime without its own entry in `runtime_amis`.
    pub ami: Option<String>,
    /// AMI per runtime name.
    pub runtime_amis: BTreeMap<String, String>,
    /// Instance type and root volume of tiers 1 to 4.
    pub tiers: [TierShape; 4],
    /// Minimum root volume of runtime `hermes`, which runs on the host (GiB).
    pub hermes_min_volume_gb: i32,
    /// Device name of the AMI's root volume, resized by the tier's volume size.
    pub root_device: String,
    /// Subnet to launch into; `None`: the default subnet of the default VPC.
    pub subnet_id: Option<String>,
    /// Security groups of every workspace instance.
    pub security_group_ids: Vec<String>,
    /// EC2 key pair name, for SSH access; optional.
    pub key_name: Option<String>,
    /// Instance profile (name, or ARN when it starts with `arn:`); optional.
    pub instance_profile: Option<String>,
    /// Tenant id: tagged `OrgID` on every instance and required of the instances the orphan
    /// sweep may terminate.
    pub org_id: Option<String>,
    /// The `MOLECULE_ENV` stamp, tagged `MoleculeEnv` when set.
    pub env_stamp: Option<String>,
    /// Image registry prefix (`MOLECULE_IMAGE_REGISTRY`).
    pub registry: String,
    /// One image for every runtime (`MOLECULE_WORKSPACE_IMAGE`).
    pub image_override: Option<String>,
    /// Digest pins per runtime (`sha256:…`).
    pub digest_pins: BTreeMap<String, String>,
    /// `AWARENESS_URL`, handed to the agent.
    pub awareness_url: Option<String>,
    /// How long to wait for a TCP connection to the endpoint.
    pub connect_timeout: Duration,
    /// How long one API operation may take in all.
    pub operation_timeout: Duration,
    /// Retries and the wait of a stop.
    pub stop: StopPolicy,
    /// Endpoint of the EC2 Instance Connect API when it differs from [`Ec2Config::endpoint`];
    /// `None`: the same override as EC2 (or AWS when there is none).
    pub eic_endpoint: Option<String>,
    /// Files and the terminal over EC2 Instance Connect and SSH.
    pub ssh: SshSettings,
}

impl Default for Ec2Config {
    fn default() -> Self {
        Self {
            region: DEFAULT_REGION.to_owned(),
            endpoint: None,
            static_keys: None,
            ami: None,
            runtime_amis: BTreeMap::new(),
            // The control plane's table: tier clamped to 3..4, T3 t3.medium / 40 GB,
            // everything else T4 t3.large / 80 GB (spec §1.8).
            tiers: [
                TierShape::new("t3.large", 80),
                TierShape::new("t3.large", 80),
                TierShape::new("t3.medium", 40),
                TierShape::new("t3.large", 80),
            ],
            hermes_min_volume_gb: 50,
            root_device: "/dev/sda1".to_owned(),
            subnet_id: None,
            security_group_ids: Vec::new(),
            key_name: None,
            instance_profile: None,
            org_id: None,
            env_stamp: None,
            registry: DEFAULT_REGISTRY.to_owned(),
            image_override: None,
            digest_pins: BTreeMap::new(),
            awareness_url: None,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(60),
            stop: StopPolicy::default(),
            eic_endpoint: None,
            ssh: SshSettings::default(),
        }
    }
}

impl Ec2Config {
    /// The configuration from the process environment (see [`Ec2Config::from_lookup`]).
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The configuration from any variable lookup:
    /// region `MOLECULE_EC2_REGION` → `AWS_REGION` → `AWS_DEFAULT_REGION` → `us-east-2`;
    /// endpoint `MOLECULE_EC2_ENDPOINT` → `AWS_ENDPOINT_URL_EC2` → `AWS_ENDPOINT_URL`;
    /// `MOLECULE_EC2_AMI`, `MOLECULE_EC2_AMI_<RUNTIME>` (upper case, `-` as `_`);
    /// `MOLECULE_EC2_INSTANCE_TYPE_TIER<n>`, `MOLECULE_EC2_VOLUME_GB_TIER<n>`;
    /// `MOLECULE_EC2_SUBNET_ID`, `MOLECULE_EC2_SECURITY_GROUP_IDS` (comma-separated),
    /// `MOLECULE_EC2_KEY_NAME`, `MOLECULE_EC2_INSTANCE_PROFILE`, `MOLECULE_EC2_ROOT_DEVICE`,
    /// `MOLECULE_EC2_TERMINATE_WAIT_SECONDS`; `MOLECULE_ORG_ID`, `MOLECULE_ENV`,
    /// `MOLECULE_IMAGE_REGISTRY`, `MOLECULE_WORKSPACE_IMAGE`, `AWARENESS_URL`; the EC2 Instance
    /// Connect endpoint `MOLECULE_EIC_ENDPOINT` → `AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT`; the
    /// SSH settings of [`SshSettings::from_lookup`].
    /// Credentials are never read here: the standard AWS provider chain finds them.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut c = Self::default();
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(region) = ["MOLECULE_EC2_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]
            .into_iter()
            .find_map(&non_empty)
        {
            c.region = region;
        }
        c.endpoint = [
            "MOLECULE_EC2_ENDPOINT",
            "AWS_ENDPOINT_URL_EC2",
            "AWS_ENDPOINT_URL",
        ]
        .into_iter()
        .find_map(&non_empty);
        c.ami = non_empty("MOLECULE_EC2_AMI");
        for runtime in Runtime::BUILTIN {
            if let Some(ami) = non_empty(&format!("MOLECULE_EC2_AMI_{}", env_suffix(runtime))) {
                c.runtime_amis.insert((*runtime).to_owned(), ami);
            }
        }
        for (i, shape) in c.tiers.iter_mut().enumerate() {
            let n = i + 1;
            if let Some(t) = non_empty(&format!("MOLECULE_EC2_INSTANCE_TYPE_TIER{n}")) {
                shape.instance_type = t;
            }
            if let Some(gb) = non_empty(&format!("MOLECULE_EC2_VOLUME_GB_TIER{n}"))
                .and_then(|v| v.parse::<i32>().ok())
                .filter(|gb| *gb > 0)
            {
                shape.volume_gb = gb;
            }
        }
        c.subnet_id = non_empty("MOLECULE_EC2_SUBNET_ID");
        c.security_group_ids = non_empty("MOLECULE_EC2_SECURITY_GROUP_IDS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        c.key_name = non_empty("MOLECULE_EC2_KEY_NAME");
        c.instance_profile = non_empty("MOLECULE_EC2_INSTANCE_PROFILE");
        if let Some(device) = non_empty("MOLECULE_EC2_ROOT_DEVICE") {
            c.root_device = device;
        }
        c.stop.wait_terminated = non_empty("MOLECULE_EC2_TERMINATE_WAIT_SECONDS")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        c.org_id = non_empty("MOLECULE_ORG_ID");
        c.env_stamp = non_empty("MOLECULE_ENV");
        if let Some(r) = non_empty("MOLECULE_IMAGE_REGISTRY") {
            c.registry = r.trim_end_matches('/').to_owned();
        }
        c.image_override = non_empty("MOLECULE_WORKSPACE_IMAGE");
        c.awareness_url = non_empty("AWARENESS_URL");
        c.eic_endpoint = [
            "MOLECULE_EIC_ENDPOINT",
            "AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT",
        ]
        .into_iter()
        .find_map(&non_empty);
        c.ssh = SshSettings::from_lookup(&get);
        c
    }

    /// The AMI of a runtime: its own entry, else the default; `None` when neither is set.
    pub fn ami_for(&self, runtime: &str) -> Option<&str> {
        self.runtime_amis
            .get(runtime)
            .or(self.ami.as_ref())
            .map(String::as_str)
    }

    /// Whether any AMI is configured (a backend without one cannot start anything).
    pub fn has_ami(&self) -> bool {
        self.ami.is_some() || !self.runtime_amis.is_empty()
    }

    /// The instance type and root volume of a tier (hermes: at least
    /// [`Ec2Config::hermes_min_volume_gb`]).
    pub fn shape_for(&self, tier: Tier, runtime: &str) -> TierShape {
        let index = usize::try_from(tier.number() - 1).unwrap_or(3).min(3);
        let mut shape = self.tiers[index].clone();
        if runtime == "hermes" {
            shape.volume_gb = shape.volume_gb.max(self.hermes_min_volume_gb);
        }
        shape
    }

    /// The image the box runs for a runtime: the override, else
    /// `<registry>/workspace-template-<runtime>:latest` (an unknown runtime gets the default
    /// runtime's image), pinned to its digest when a `sha256:` pin exists.
    pub fn image_for(&self, runtime: &str) -> String {
        if let Some(image) = &self.image_override {
            return image.clone();
        }
        let runtime = if runtime != Runtime::EXTERNAL && Runtime::BUILTIN.contains(&runtime) {
            runtime
        } else {
            Runtime::DEFAULT
        };
        let repository = format!("{}/workspace-template-{runtime}", self.registry);
        match self.digest_pins.get(runtime) {
            Some(digest) if is_digest(digest) => format!("{repository}@{digest}"),
            _ => format!("{repository}:latest"),
        }
    }
}

/// A runtime name as an environment-variable suffix: `claude-code` → `CLAUDE_CODE`.
pub fn env_suffix(runtime: &str) -> String {
    runtime
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> Ec2Config {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Ec2Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_control_plane() {
        let c = lookup(&[]);
        assert_eq!(c.region, "us-east-2");
        assert_eq!(c.endpoint, None);
        assert!(!c.has_ami());
        assert_eq!(c.ami_for("langgraph"), None);
        assert_eq!(
            c.shape_for(Tier::Privileged, "langgraph"),
            TierShape::new("t3.medium", 40)
        );
        assert_eq!(
            c.shape_for(Tier::FullAccess, "langgraph"),
            TierShape::new("t3.large", 80)
        );
        assert_eq!(
            c.shape_for(Tier::Standard, "langgraph"),
            TierShape::new("t3.large", 80)
        );
        assert_eq!(c.shape_for(Tier::Privileged, "hermes").volume_gb, 50);
        assert_eq!(c.stop, StopPolicy::default());
        assert_eq!(
            c.image_for("claude-code"),
            "ghcr.io/molecule-ai/workspace-template-claude-code:latest"
        );
        assert_eq!(
            c.image_for("no-such-runtime"),
            "ghcr.io/molecule-ai/workspace-template-langgraph:latest"
        );
    }

    #[test]
    fn variables_are_read_in_their_order() {
        let c = lookup(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
            ("AWS_ENDPOINT_URL", "http://fallback:1"),
            ("MOLECULE_EC2_ENDPOINT", " http://127.0.0.1:5000 "),
            ("MOLECULE_EC2_AMI", "ami-default"),
            ("MOLECULE_EC2_AMI_CLAUDE_CODE", "ami-claude"),
            ("MOLECULE_EC2_INSTANCE_TYPE_TIER2", "t3.small"),
            ("MOLECULE_EC2_VOLUME_GB_TIER2", "30"),
            ("MOLECULE_EC2_VOLUME_GB_TIER3", "-4"),
            ("MOLECULE_EC2_SECURITY_GROUP_IDS", "sg-1, ,sg-2"),
            ("MOLECULE_EC2_SUBNET_ID", "subnet-9"),
            ("MOLECULE_EC2_TERMINATE_WAIT_SECONDS", "120"),
            ("MOLECULE_IMAGE_REGISTRY", "registry.example/org/"),
            ("MOLECULE_ORG_ID", "org-7"),
        ]);
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.ami_for("claude-code"), Some("ami-claude"));
        assert_eq!(c.ami_for("langgraph"), Some("ami-default"));
        assert_eq!(
            c.shape_for(Tier::Standard, "x"),
            TierShape::new("t3.small", 30)
        );
        assert_eq!(c.shape_for(Tier::Privileged, "x").volume_gb, 40);
        assert_eq!(c.security_group_ids, vec!["sg-1", "sg-2"]);
        assert_eq!(c.subnet_id.as_deref(), Some("subnet-9"));
        assert_eq!(c.stop.wait_terminated, Some(Duration::from_secs(120)));
        assert_eq!(c.org_id.as_deref(), Some("org-7"));
        assert_eq!(
            c.image_for("hermes"),
            "registry.example/org/workspace-template-hermes:latest"
        );
        let c = lookup(&[("AWS_DEFAULT_REGION", "ap-south-1")]);
        assert_eq!(c.region, "ap-south-1");
    }

    #[test]
    fn images_are_pinned_by_digest_only_when_the_pin_is_one() {
        let mut c = Ec2Config::default();
        let digest = format!("sha256:{}", "a".repeat(64));
        c.digest_pins.insert("hermes".into(), digest.clone());
        c.digest_pins.insert("langgraph".into(), "latest".into());
        assert_eq!(
            c.image_for("hermes"),
            format!("ghcr.io/molecule-ai/workspace-template-hermes@{digest}")
        );
        assert!(c.image_for("langgraph").ends_with(":latest"));
        c.image_override = Some("mine:1".into());
        assert_eq!(c.image_for("hermes"), "mine:1");
        assert_eq!(env_suffix("claude-code"), "CLAUDE_CODE");
    }
}
