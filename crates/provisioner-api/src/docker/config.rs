//! Configuration of the Docker backend and the pure decisions made from it: image choice, the
//! tier table, the environment and the `/workspace` mount (spec provisioner §1.5.2–1.5.5, §1.6.1).
//! Nothing here talks to a daemon, so all of it is unit-tested.

use std::collections::BTreeMap;

use molecule_domain::{Runtime, Tier, WorkspaceAccess, WorkspaceId};

use crate::ProvisionRequest;
use crate::names::{AGENT_PORT, config_volume_name};

/// The default image registry prefix.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/molecule-ai";
/// The default Docker network the workspace containers join.
pub const DEFAULT_NETWORK: &str = "molecule-monorepo-net";

/// When the backend pulls an image before creating a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// The reference's policy: pull when the image is missing or its tag moves (`latest`, `dev`…).
    MissingOrMoving,
    /// Pull only when the image is not local.
    Missing,
    /// Never pull: a missing image is [`crate::ProvisionError::ImageNotFound`] at once.
    Never,
}

/// Memory and CPU of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLimits {
    /// Memory cap in MiB.
    pub memory_mb: i64,
    /// CPU shares; 1024 shares are one CPU (a hard cap, as NanoCPUs).
    pub cpu_shares: i64,
}

/// Everything the Docker backend is configured with. [`DockerConfig::default`] is the reference's
/// behaviour; [`DockerConfig::from_env`] reads the reference's environment variables.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Registry prefix of the runtime images (`MOLECULE_IMAGE_REGISTRY`).
    pub registry: String,
    /// Images per runtime that replace `<registry>/workspace-template-<runtime>:latest`.
    pub images: BTreeMap<String, String>,
    /// One image for every runtime (`MOLECULE_WORKSPACE_IMAGE`), winning over `images`.
    pub image_override: Option<String>,
    /// Digest pins per runtime (`sha256:<64 hex>`), applied to the runtime image.
    pub digest_pins: BTreeMap<String, String>,
    /// Ignore the digest pins and run `:latest` (`WORKSPACE_IMAGE_LOCAL_OVERRIDE`).
    pub local_override: bool,
    /// Platform for pull and create, `os/arch` (`MOLECULE_IMAGE_PLATFORM`).
    pub platform: Option<String>,
    /// When to pull.
    pub pull_policy: PullPolicy,
    /// How long a pull may take before it is abandoned (the create step then reports).
    pub pull_timeout: std::time::Duration,
    /// The Docker network (`MOLECULE_DOCKER_NETWORK`); created when missing.
    pub network: String,
    /// Whether tiers 3 and 4 get what the tier table gives them: privileged, host PID, and for
    /// tier 4 host network and the Docker socket. Off, they keep only their memory and CPU.
    pub host_access: bool,
    /// Limits of tiers 2, 3 and 4 (`TIER{2,3,4}_MEMORY_MB`, `TIER{2,3,4}_CPU_SHARES`).
    pub tier_limits: [TierLimits; 3],
    /// Host directory bound to `/workspace` when the workspace names none (`WORKSPACE_DIR`).
    pub workspace_dir: Option<String>,
    /// `AWARENESS_URL`, injected with the workspace id as `AWARENESS_NAMESPACE`.
    pub awareness_url: Option<String>,
    /// Restart policy name (`unless-stopped`).
    pub restart_policy: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            registry: DEFAULT_REGISTRY.to_owned(),
            images: BTreeMap::new(),
            image_override: None,
            digest_pins: BTreeMap::new(),
            local_override: false,
            platform: None,
            pull_policy: PullPolicy::MissingOrMoving,
            pull_timeout: std::time::Duration::from_secs(300),
            network: DEFAULT_NETWORK.to_owned(),
            host_access: true,
            tier_limits: [
                TierLimits {
                    memory_mb: 512,
                    cpu_shares: 1024,
                },
                TierLimits {
                    memory_mb: 2048,
                    cpu_shares: 2048,
                },
                TierLimits {
                    memory_mb: 4096,
                    cpu_shares: 4096,
                },
            ],
            workspace_dir: None,
            awareness_url: None,
            restart_policy: "unless-stopped".to_owned(),
        }
    }
}

impl DockerConfig {
    /// The reference's configuration from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The configuration from any variable lookup (for tests and embedding tools).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut c = Self::default();
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(r) = non_empty("MOLECULE_IMAGE_REGISTRY") {
            c.registry = r.trim_end_matches('/').to_owned();
        }
        c.image_override = non_empty("MOLECULE_WORKSPACE_IMAGE");
        c.local_override = non_empty("WORKSPACE_IMAGE_LOCAL_OVERRIDE").is_some();
        // Set, even to empty, wins; unset means the automatic choice.
        c.platform = match get("MOLECULE_IMAGE_PLATFORM") {
            Some(p) => parse_platform(p.trim()).map(|_| p.trim().to_owned()),
            None if cfg!(all(target_os = "macos", target_arch = "aarch64")) => {
                Some("linux/amd64".to_owned())
            }
            None => None,
        };
        if let Some(n) = non_empty("MOLECULE_DOCKER_NETWORK") {
            c.network = n;
        }
        for (i, tier) in [2, 3, 4].into_iter().enumerate() {
            let positive = |k: String| {
                get(&k)
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .filter(|n| *n > 0)
            };
            if let Some(mb) = positive(format!("TIER{tier}_MEMORY_MB")) {
                c.tier_limits[i].memory_mb = mb;
            }
            if let Some(shares) = positive(format!("TIER{tier}_CPU_SHARES")) {
                c.tier_limits[i].cpu_shares = shares;
            }
        }
        c.workspace_dir = non_empty("WORKSPACE_DIR");
        c.awareness_url = non_empty("AWARENESS_URL");
        c
    }

    /// The image of a runtime (spec §1.5.2, §1.14.3–4): the override, the configured image of
    /// the runtime, the runtime image (digest-pinned when a pin exists and no local override),
    /// and the default runtime's image for an unknown runtime.
    pub fn image_for(&self, runtime: &str) -> String {
        if let Some(image) = &self.image_override {
            return image.clone();
        }
        if let Some(image) = self.images.get(runtime) {
            return image.clone();
        }
        let runtime = if is_known_runtime(runtime) {
            runtime
        } else {
            Runtime::DEFAULT
        };
        let image = format!("{}/workspace-template-{runtime}:latest", self.registry);
        match self.digest_pins.get(runtime) {
            Some(digest) if !self.local_override && is_digest(digest) => {
                format!("{}@{digest}", strip_tag(&image))
            }
            _ => image,
        }
    }

    /// The limits of a tier: tiers 2–4 from the table; tier 1 has none.
    pub fn limits(&self, tier: Tier) -> Option<TierLimits> {
        match tier {
            Tier::Sandboxed => None,
            Tier::Standard => Some(self.tier_limits[0]),
            Tier::Privileged => Some(self.tier_limits[1]),
            Tier::FullAccess => Some(self.tier_limits[2]),
        }
    }
}

/// Whether a runtime has a built-in image (every built-in runtime but `external`).
pub fn is_known_runtime(runtime: &str) -> bool {
    runtime != Runtime::EXTERNAL && Runtime::BUILTIN.contains(&runtime)
}

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The image reference without its tag (the last `:` after the last `/`).
pub fn strip_tag(image: &str) -> &str {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(colon) => &image[..slash + colon],
        None => image,
    }
}

/// Whether a tag moves, so that a local copy may be stale (spec §1.5.2, §1.14.5).
pub fn is_moving_tag(image: &str) -> bool {
    if image.contains("@sha256:") {
        return false;
    }
    let tag = match image.rfind(':') {
        Some(i) if !image[i + 1..].contains('/') => &image[i + 1..],
        _ => "",
    };
    matches!(
        tag,
        "" | "latest" | "staging" | "main" | "dev" | "edge" | "nightly" | "rolling"
    )
}

/// Parses `os/arch` at the first `/`; `linux`, `linux/` and `/amd64` are malformed.
pub fn parse_platform(p: &str) -> Option<(&str, &str)> {
    let (os, arch) = p.split_once('/')?;
    (!os.is_empty() && !arch.is_empty()).then_some((os, arch))
}

/// The runtime name an image was chosen for, for error messages (spec §1.5.2).
pub fn runtime_tag(image: &str) -> String {
    if let Some(x) = image.strip_prefix("workspace-template:") {
        return x.to_owned();
    }
    if let Some(i) = image.find("workspace-template-") {
        let rest = &image[i + "workspace-template-".len()..];
        let end = rest.find([':', '@']).unwrap_or(rest.len());
        return rest[..end].to_owned();
    }
    match image.rfind(':') {
        Some(i) if i + 1 < image.len() => image[i + 1..].to_owned(),
        _ => image.to_owned(),
    }
}

/// Environment keys the request's env cannot replace (spec §2.3.6).
pub use molecule_domain::validation::RESERVED_ENV;

/// The container environment as `KEY=value`, in a deterministic order (spec §1.6.1): the
/// built-ins, the awareness pair, `MOLECULE_AGENT_ROLE` / `PARENT_ID` / `MODEL` from the request
/// (unless its env names them), then the request's env sorted by key. Reserved keys in the
/// request's env are dropped (and returned, for a warning); a later duplicate of a non-reserved
/// built-in (`PYTHONPATH`) wins in Docker.
pub fn build_env(config: &DockerConfig, request: &ProvisionRequest) -> (Vec<String>, Vec<String>) {
    let id = request.workspace_id;
    let mut env = vec![
        format!("WORKSPACE_ID={id}"),
        "WORKSPACE_CONFIG_PATH=/configs".to_owned(),
        format!("PLATFORM_URL={}", request.platform_url),
        format!("MOLECULE_URL={}", request.platform_url),
        format!("TIER={}", request.tier.number()),
        "PLUGINS_DIR=/plugins".to_owned(),
        "PYTHONPATH=/app".to_owned(),
    ];
    if let Some(url) = &config.awareness_url {
        env.push(format!("AWARENESS_NAMESPACE={id}"));
        env.push(format!("AWARENESS_URL={url}"));
    }
    let derived = [
        ("MOLECULE_AGENT_ROLE", request.role.clone()),
        ("PARENT_ID", request.parent_id.map(|p| p.to_string())),
        ("MODEL", request.model.clone()),
    ];
    for (key, value) in derived {
        if let Some(v) = value
            && !request.env.contains_key(key)
        {
            env.push(format!("{key}={v}"));
        }
    }
    let mut dropped = Vec::new();
    for (key, value) in &request.env {
        if RESERVED_ENV.contains(&key.as_str()) {
            dropped.push(key.clone());
        } else {
            env.push(format!("{key}={}", value.expose()));
        }
    }
    (env, dropped)
}

/// The `/workspace` bind (spec §1.5.4): the host directory (the request's, else the configured
/// one) when access is read-only or read-write, else the workspace's own volume.
pub fn workspace_bind(config: &DockerConfig, request: &ProvisionRequest) -> String {
    let dir = request
        .workspace_dir
        .as_deref()
        .or(config.workspace_dir.as_deref())
        .filter(|d| !d.is_empty());
    match (dir, request.workspace_access) {
        (Some(dir), WorkspaceAccess::ReadOnly) => format!("{dir}:/workspace:ro"),
        (Some(dir), WorkspaceAccess::ReadWrite) => format!("{dir}:/workspace"),
        _ => format!("{}:/workspace", workspace_volume_name(request.workspace_id)),
    }
}

/// The workspace volume: `ws-<full id>-workspace` (the reference's name; the backend creates
/// it explicitly, with the label).
pub fn workspace_volume_name(id: WorkspaceId) -> String {
    format!("ws-{id}-workspace")
}

/// The host-facing part of a container, decided by the tier (spec §1.5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierSettings {
    /// Binds, in order.
    pub binds: Vec<String>,
    /// Privileged.
    pub privileged: bool,
    /// Host PID namespace.
    pub host_pid: bool,
    /// Host network (then no port is published and the agent answers on host port 8000).
    pub host_network: bool,
    /// Read-only root file system, with a tmpfs `/tmp`.
    pub read_only_root: bool,
    /// Memory cap in bytes (0: none).
    pub memory_bytes: i64,
    /// CPU cap in NanoCPUs (0: none).
    pub nano_cpus: i64,
}

/// Applies the tier table to the base binds.
pub fn tier_settings(
    config: &DockerConfig,
    tier: Tier,
    id: WorkspaceId,
    base_binds: Vec<String>,
) -> TierSettings {
    let limits = config.limits(tier);
    let mut s = TierSettings {
        binds: base_binds,
        privileged: false,
        host_pid: false,
        host_network: false,
        read_only_root: false,
        memory_bytes: limits.map_or(0, |l| l.memory_mb * 1024 * 1024),
        nano_cpus: limits.map_or(0, |l| l.cpu_shares * 1_000_000_000 / 1024),
    };
    match tier {
        Tier::Sandboxed => {
            s.binds = vec![format!("{}:/configs", config_volume_name(id))];
            s.read_only_root = true;
        }
        Tier::Standard => {}
        Tier::Privileged if config.host_access => {
            s.privileged = true;
            s.host_pid = true;
        }
        Tier::FullAccess if config.host_access => {
            s.privileged = true;
            s.host_pid = true;
            s.host_network = true;
            s.binds
                .push("/var/run/docker.sock:/var/run/docker.sock".to_owned());
        }
        Tier::Privileged | Tier::FullAccess => {}
    }
    s
}

/// The agent URL of a container in host network mode.
pub fn host_network_url() -> String {
    format!("http://127.0.0.1:{AGENT_PORT}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretValue;

    fn request(tier: Tier) -> ProvisionRequest {
        ProvisionRequest {
            workspace_id: WorkspaceId::new(),
            name: "w".into(),
            role: None,
            tier,
            runtime: "langgraph".into(),
            parent_id: None,
            model: None,
            template: None,
            config_files: Vec::new(),
            workspace_dir: None,
            workspace_access: WorkspaceAccess::None,
            platform_url: "http://host:8080".into(),
            env: BTreeMap::new(),
            auth_token: None,
            platform_inbound_secret: None,
            bootstrap_token: None,
        }
    }

    #[test]
    fn images() {
        let mut c = DockerConfig::default();
        assert_eq!(
            c.image_for("hermes"),
            "ghcr.io/molecule-ai/workspace-template-hermes:latest"
        );
        assert_eq!(
            c.image_for("../../../etc/passwd"),
            "ghcr.io/molecule-ai/workspace-template-langgraph:latest"
        );
        assert_eq!(
            c.image_for("external"),
            "ghcr.io/molecule-ai/workspace-template-langgraph:latest"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        c.digest_pins.insert("hermes".into(), digest.clone());
        assert_eq!(
            c.image_for("hermes"),
            format!("ghcr.io/molecule-ai/workspace-template-hermes@{digest}")
        );
        c.local_override = true;
        assert!(c.image_for("hermes").ends_with(":latest"));
        c.images.insert("hermes".into(), "mine:1".into());
        assert_eq!(c.image_for("hermes"), "mine:1");
        c.image_override = Some("all:2".into());
        assert_eq!(c.image_for("hermes"), "all:2");

        let c = DockerConfig::from_lookup(|k| {
            (k == "MOLECULE_IMAGE_REGISTRY").then(|| "reg.example/x/".to_owned())
        });
        assert_eq!(
            c.image_for("codex"),
            "reg.example/x/workspace-template-codex:latest"
        );
        let c = DockerConfig::from_lookup(|k| (k == "MOLECULE_IMAGE_REGISTRY").then(String::new));
        assert!(c.image_for("codex").starts_with(DEFAULT_REGISTRY));
    }

    #[test]
    fn moving_tags_and_platforms() {
        for moving in ["x", "x:latest", "x:dev", "localhost:5000/x", "a/b:nightly"] {
            assert!(is_moving_tag(moving), "{moving}");
        }
        for pinned in [
            "x:latest@sha256:abc",
            "x:sha-abc1234",
            "x:2026-04-30",
            "x:v1.2.3",
            "x:build-12345",
            "workspace-template:hermes",
        ] {
            assert!(!is_moving_tag(pinned), "{pinned}");
        }
        assert_eq!(
            parse_platform("linux/amd64/v8"),
            Some(("linux", "amd64/v8"))
        );
        for bad in ["linux", "linux/", "/amd64", ""] {
            assert_eq!(parse_platform(bad), None);
        }
        let c = DockerConfig::from_lookup(|k| (k == "MOLECULE_IMAGE_PLATFORM").then(String::new));
        assert_eq!(c.platform, None);
        assert_eq!(strip_tag("localhost:5000/x:1"), "localhost:5000/x");
        assert_eq!(strip_tag("localhost:5000/x"), "localhost:5000/x");
    }

    #[test]
    fn runtime_tags() {
        assert_eq!(runtime_tag("workspace-template:hermes"), "hermes");
        assert_eq!(
            runtime_tag("ghcr.io/molecule-ai/workspace-template-codex:latest"),
            "codex"
        );
        assert_eq!(runtime_tag("foo:bar"), "bar");
        assert_eq!(runtime_tag("foo:"), "foo:");
    }

    #[test]
    fn tier_table() {
        let c = DockerConfig::default();
        let id = WorkspaceId::new();
        let base = || vec!["cfg:/configs".to_owned(), "w:/workspace".to_owned()];
        let t = |tier| tier_settings(&c, tier, id, base());
        let flags = |s: &TierSettings| (s.privileged, s.host_network, s.host_pid, s.read_only_root);
        assert_eq!(flags(&t(Tier::Sandboxed)), (false, false, false, true));
        assert_eq!(flags(&t(Tier::Standard)), (false, false, false, false));
        assert_eq!(flags(&t(Tier::Privileged)), (true, false, true, false));
        assert_eq!(flags(&t(Tier::FullAccess)), (true, true, true, false));
        assert_eq!(
            t(Tier::Sandboxed).binds,
            vec![format!("{}:/configs", config_volume_name(id))]
        );
        assert_eq!(t(Tier::Privileged).binds, base());
        assert_eq!(
            t(Tier::FullAccess).binds.last().map(String::as_str),
            Some("/var/run/docker.sock:/var/run/docker.sock")
        );
        assert_eq!(t(Tier::Standard).memory_bytes, 512 * 1024 * 1024);
        assert_eq!(t(Tier::Standard).nano_cpus, 1_000_000_000);
        assert_eq!(t(Tier::FullAccess).nano_cpus, 4_000_000_000);
        assert_eq!(t(Tier::Sandboxed).memory_bytes, 0);

        let c = DockerConfig::from_lookup(|k| match k {
            "TIER3_MEMORY_MB" => Some("8192".into()),
            "TIER3_CPU_SHARES" => Some("4096".into()),
            "TIER2_MEMORY_MB" => Some("-1".into()),
            _ => None,
        });
        let t3 = tier_settings(&c, Tier::Privileged, id, base());
        assert_eq!(t3.memory_bytes, 8192 * 1024 * 1024);
        assert_eq!(t3.nano_cpus, 4_000_000_000);
        assert!(t3.privileged && t3.host_pid);
        assert_eq!(
            tier_settings(&c, Tier::Standard, id, base()).memory_bytes,
            512 * 1024 * 1024
        );

        let safe = DockerConfig {
            host_access: false,
            ..DockerConfig::default()
        };
        let t4 = tier_settings(&safe, Tier::FullAccess, id, base());
        assert_eq!(flags(&t4), (false, false, false, false));
        assert_eq!(t4.binds, base());
        assert_eq!(t4.memory_bytes, 4096 * 1024 * 1024);
    }

    #[test]
    fn env_order_and_reserved_keys() {
        let mut r = request(Tier::Standard);
        r.role = Some("reviewer".into());
        r.env.insert("PYTHONPATH".into(), SecretValue::new("/mine"));
        r.env
            .insert("WORKSPACE_ID".into(), SecretValue::new("evil"));
        r.env.insert("B_KEY".into(), SecretValue::new("b"));
        r.env.insert("A_KEY".into(), SecretValue::new("a"));
        let (env, dropped) = build_env(&DockerConfig::default(), &r);
        assert_eq!(dropped, vec!["WORKSPACE_ID".to_owned()]);
        assert_eq!(env[0], format!("WORKSPACE_ID={}", r.workspace_id));
        assert_eq!(
            &env[1..],
            &[
                "WORKSPACE_CONFIG_PATH=/configs",
                "PLATFORM_URL=http://host:8080",
                "MOLECULE_URL=http://host:8080",
                "TIER=2",
                "PLUGINS_DIR=/plugins",
                "PYTHONPATH=/app",
                "MOLECULE_AGENT_ROLE=reviewer",
                "A_KEY=a",
                "B_KEY=b",
                "PYTHONPATH=/mine",
            ]
        );
        let c = DockerConfig {
            awareness_url: Some("http://aw".into()),
            ..DockerConfig::default()
        };
        let (env, _) = build_env(&c, &r);
        assert!(env.contains(&"AWARENESS_URL=http://aw".to_owned()));
        assert!(env.contains(&format!("AWARENESS_NAMESPACE={}", r.workspace_id)));
    }

    #[test]
    fn workspace_mounts() {
        let c = DockerConfig::default();
        let mut r = request(Tier::Standard);
        let own = format!("ws-{}-workspace:/workspace", r.workspace_id);
        assert_eq!(workspace_bind(&c, &r), own);
        r.workspace_dir = Some("/src".into());
        assert_eq!(workspace_bind(&c, &r), own);
        r.workspace_access = WorkspaceAccess::ReadOnly;
        assert_eq!(workspace_bind(&c, &r), "/src:/workspace:ro");
        r.workspace_access = WorkspaceAccess::ReadWrite;
        assert_eq!(workspace_bind(&c, &r), "/src:/workspace");
        r.workspace_dir = None;
        let c = DockerConfig {
            workspace_dir: Some("/global".into()),
            ..DockerConfig::default()
        };
        assert_eq!(workspace_bind(&c, &r), "/global:/workspace");
    }
}
