//! `plugin.yaml` (spec §1.5): what the plugin lists and the runtimes it supports; the
//! registry listing; and the supply-chain digest of a staged plugin.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Files;

/// Largest `plugin.yaml` parsed, bytes.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// A plugin as listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Author.
    #[serde(default)]
    pub author: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Skills it brings.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Runtimes it supports (empty: all).
    #[serde(default)]
    pub runtimes: Vec<String>,
    /// Whether it supports the workspace's runtime (installed listings only).
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub supported_on_runtime: Option<bool>,
}

impl PluginInfo {
    /// Parses a manifest; a missing or broken one gives the name only.
    pub fn parse(name: &str, yaml: Option<&[u8]>) -> Self {
        let parsed = yaml
            .filter(|y| y.len() <= MAX_MANIFEST_BYTES)
            .and_then(|y| yaml_serde::from_slice::<PluginInfo>(y).ok());
        let mut info = parsed.unwrap_or_default();
        info.name = name.to_owned();
        info
    }

    /// Whether it supports `runtime` (`-` and `_` compare equal).
    pub fn supports(&self, runtime: &str) -> bool {
        let norm = |s: &str| s.trim().replace('-', "_").to_ascii_lowercase();
        self.runtimes.is_empty() || self.runtimes.iter().any(|r| norm(r) == norm(runtime))
    }
}

/// The registry: every subdirectory of `dir` with a name passing the plugin-name guard,
/// ascending; with `runtime`, only the plugins supporting it.
pub fn registry(dir: &Path, runtime: Option<&str>) -> Vec<PluginInfo> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = read
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| molecule_domain::paths::plugin_name(n).is_ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let yaml = std::fs::read(dir.join(&n).join("plugin.yaml")).ok();
            PluginInfo::parse(&n, yaml.as_deref())
        })
        .filter(|p| runtime.is_none_or(|r| p.supports(r)))
        .collect()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The manifest digest: SHA-256 over `<path>\0<content>` of every file but the root
/// `manifest.json`, sorted by path.
pub fn tree_digest(files: &Files) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files.iter().filter(|(p, _)| p.as_str() != "manifest.json") {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Supply-chain check A: a `manifest.json` with a `sha256` string must match the tree.
/// No manifest or no field passes; an unparseable manifest or a non-string field fails.
pub fn integrity_ok(files: &Files) -> bool {
    let Some(raw) = files.get("manifest.json") else {
        return true;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return false;
    };
    match v.get("sha256") {
        None => true,
        Some(serde_json::Value::String(want)) => want.eq_ignore_ascii_case(&tree_digest(files)),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supports_normalizes() {
        let p = PluginInfo {
            runtimes: vec!["claude-code".into()],
            ..PluginInfo::default()
        };
        assert!(p.supports("claude_code") && !p.supports("hermes"));
        assert!(PluginInfo::default().supports("anything"));
    }

    #[test]
    fn manifest_digest() {
        let mut files = Files::from([("a".to_owned(), b"1".to_vec())]);
        assert!(integrity_ok(&files));
        let digest = tree_digest(&files);
        files.insert(
            "manifest.json".into(),
            format!("{{\"sha256\":\"{}\"}}", digest.to_uppercase()).into_bytes(),
        );
        assert!(integrity_ok(&files));
        files.insert(
            "manifest.json".into(),
            format!("{{\"sha256\":\"{}\"}}", "0".repeat(64)).into_bytes(),
        );
        assert!(!integrity_ok(&files));
        files.insert("manifest.json".into(), b"{\"sha256\": 5}".to_vec());
        assert!(!integrity_ok(&files));
        files.insert("manifest.json".into(), b"{}".to_vec());
        assert!(integrity_ok(&files));
    }
}
