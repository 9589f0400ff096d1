//! Where org templates and plugins come from, and the plugin install limits (spec templates
//! §1.0.2 and §1.5): fixed at boot from the configuration, replaceable in tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default GitHub API base URL.
pub const DEFAULT_GITHUB_API_URL: &str = crate::github_app::DEFAULT_API_URL;

/// The plugin install limits (`PLUGIN_INSTALL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Largest install request body, bytes.
    pub body_max_bytes: usize,
    /// How long a whole install (resolve, fetch, deliver) may take.
    pub fetch_timeout: Duration,
    /// Largest staged plugin (sum of its regular files), bytes.
    pub max_dir_bytes: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            body_max_bytes: 65_536,
            fetch_timeout: Duration::from_secs(300),
            max_dir_bytes: 104_857_600,
        }
    }
}

impl PluginLimits {
    /// The limits from the three `PLUGIN_INSTALL_*` settings (unset or unusable: the
    /// default, with a warning), logged once.
    pub fn from_settings(body: Option<&str>, timeout: Option<&str>, dir: Option<&str>) -> Self {
        let defaults = Self::default();
        let fetch_timeout = match timeout {
            None => defaults.fetch_timeout,
            Some(t) => parse_duration(t).unwrap_or_else(|| {
                tracing::warn!(
                    value = t,
                    "PLUGIN_INSTALL_FETCH_TIMEOUT is not a duration; using 5m"
                );
                defaults.fetch_timeout
            }),
        };
        let limits = Self {
            body_max_bytes: positive_or(
                "PLUGIN_INSTALL_BODY_MAX_BYTES",
                body,
                defaults.body_max_bytes,
            ),
            fetch_timeout,
            max_dir_bytes: positive_or("PLUGIN_INSTALL_MAX_DIR_BYTES", dir, defaults.max_dir_bytes),
        };
        tracing::info!(
            "Plugin install limits: body={} timeout={:?} staged={}",
            limits.body_max_bytes,
            limits.fetch_timeout,
            limits.max_dir_bytes
        );
        limits
    }
}

/// The org template and plugin sources of this server.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The org templates directory (each subdirectory holds an `org.yaml`).
    pub org_templates_dir: PathBuf,
    /// The plugin registry directory (each subdirectory is a plugin); the `local://` source.
    pub plugins_dir: PathBuf,
    /// The GitHub API base URL the `github://` source fetches tarballs from.
    pub github_api_url: String,
    /// Whether a `github://` source without a `#ref` is accepted (`PLUGIN_ALLOW_UNPINNED`).
    pub allow_unpinned: bool,
    /// The plugin install limits.
    pub limits: PluginLimits,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            org_templates_dir: PathBuf::from("org-templates"),
            plugins_dir: PathBuf::from("plugins"),
            github_api_url: DEFAULT_GITHUB_API_URL.to_owned(),
            allow_unpinned: false,
            limits: PluginLimits::default(),
        }
    }
}

/// Whether `dir` has at least one subdirectory.
fn has_subdir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| entries.flatten().any(|e| e.path().is_dir()))
}

/// The org templates directory when none is configured: the first existing of
/// `org-templates`, `../org-templates`, `<configs>/../org-templates`; else `org-templates`.
pub fn default_org_templates_dir(configs_dir: Option<&Path>) -> PathBuf {
    let mut candidates = vec![
        PathBuf::from("org-templates"),
        PathBuf::from("../org-templates"),
    ];
    if let Some(c) = configs_dir {
        candidates.push(c.join("../org-templates"));
    }
    candidates
        .into_iter()
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("org-templates"))
}

/// The plugin registry when none is configured: `<configs>/../plugins`, `../plugins` or
/// `plugins`, the first holding a plugin; else `<configs>/../plugins` (or `plugins`).
pub fn default_plugins_dir(configs_dir: Option<&Path>) -> PathBuf {
    let beside = configs_dir.map(|c| c.join("../plugins"));
    let mut candidates: Vec<PathBuf> = beside.iter().cloned().collect();
    candidates.push(PathBuf::from("../plugins"));
    candidates.push(PathBuf::from("plugins"));
    candidates
        .into_iter()
        .find(|d| has_subdir(d))
        .or(beside)
        .unwrap_or_else(|| PathBuf::from("plugins"))
}

/// A positive integer setting, else `default` (with a warning when set but unusable).
pub fn positive_or<T: std::str::FromStr + PartialOrd + Default + Copy>(
    name: &str,
    raw: Option<&str>,
    default: T,
) -> T {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => default,
        Some(text) => match text.parse::<T>() {
            Ok(n) if n > T::default() => n,
            _ => {
                tracing::warn!(
                    setting = name,
                    value = text,
                    "not a positive number; default used"
                );
                default
            }
        },
    }
}

/// A duration like `5m`, `90s`, `1h30m`, `250ms` (a bare number is seconds); `None` when it
/// does not parse or is zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let piece = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(piece)?;
        rest = &rest[unit_len..];
    }
    (total > Duration::ZERO).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("42"), Some(Duration::from_secs(42)));
        for bad in ["", "0", "0s", "m", "5x", "-5s", "5m-"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_fall_back_on_bad_values() {
        assert_eq!(positive_or("x", Some("0"), 7usize), 7);
        assert_eq!(positive_or("x", Some("-3"), 7i64), 7);
        assert_eq!(positive_or("x", Some("12"), 7usize), 12);
        assert_eq!(positive_or("x", None, 7usize), 7);
    }
}
