//! The path guards of the Files API, template import and plugins (spec templates §1.0.4–1.0.6):
//! a value of [`RelPath`] or [`FileRoot`] has passed them, so a backend never sees a path that
//! could leave its root.

use std::fmt;

/// Why a relative path was refused. Handlers answer `400 {"error":"invalid path"}` whatever the
/// reason; the reason is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `""` or `"."` (or only `./` pieces).
    #[error("empty or dot-only path")]
    Empty,
    /// Absolute, or with `..` anywhere (raw or after cleaning).
    #[error("path traversal")]
    Traversal,
    /// A NUL byte, which no file system path can hold.
    #[error("path contains a NUL byte")]
    Nul,
}

/// A path relative to a file root: not empty, not absolute, no `..` anywhere, no NUL, cleaned
/// (no `.` pieces, no doubled or trailing `/`). Display gives the cleaned form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// Checks `raw` with `rel_path_ok` (plus NUL) and cleans it.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.contains('\0') {
            return Err(PathError::Nul);
        }
        if raw.is_empty() || raw == "." {
            return Err(PathError::Empty);
        }
        if raw.contains("..") || raw.starts_with('/') {
            return Err(PathError::Traversal);
        }
        let parts: Vec<&str> = raw
            .split('/')
            .filter(|part| !part.is_empty() && *part != ".")
            .collect();
        if parts.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(Self(parts.join("/")))
    }

    /// The cleaned path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its `/`-separated pieces.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last piece (the file name).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The roots the Files API may touch inside a workspace (`?root=`); `/configs` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FileRoot {
    /// `/configs`: the config volume (Docker) or the runtime's managed-config directory (EC2).
    #[default]
    Configs,
    /// `/workspace`.
    Workspace,
    /// `/home`.
    Home,
    /// `/plugins`.
    Plugins,
}

/// The error text of a bad `?root=`.
pub const BAD_ROOT: &str = "root must be one of: /configs, /workspace, /home, /plugins";

impl FileRoot {
    /// All roots, in the order of [`BAD_ROOT`].
    pub const ALL: [FileRoot; 4] = [Self::Configs, Self::Workspace, Self::Home, Self::Plugins];

    /// Parses `?root=`; empty means `/configs`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "" | "/configs" => Some(Self::Configs),
            "/workspace" => Some(Self::Workspace),
            "/home" => Some(Self::Home),
            "/plugins" => Some(Self::Plugins),
            _ => None,
        }
    }

    /// The absolute path of the root inside a container.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configs => "/configs",
            Self::Workspace => "/workspace",
            Self::Home => "/home",
            Self::Plugins => "/plugins",
        }
    }
}

/// Why a plugin name was refused (spec templates §1.0.6, plus the local resolver's pattern,
/// applied everywhere here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PluginNameError {
    /// Empty.
    #[error("plugin name is required")]
    Empty,
    /// A path separator or `..`.
    #[error("invalid plugin name: must not contain path separators or '..'")]
    Separator,
    /// Anything else outside `^[a-z0-9][a-z0-9._-]{0,127}$`.
    #[error("invalid plugin name")]
    Pattern,
}

/// Checks a plugin name: `^[a-z0-9][a-z0-9._-]{0,127}$`, no `..`.
pub fn plugin_name(name: &str) -> Result<(), PluginNameError> {
    if name.is_empty() {
        return Err(PluginNameError::Empty);
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(PluginNameError::Separator);
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !first_ok || !rest_ok || name.len() > 128 {
        return Err(PluginNameError::Pattern);
    }
    Ok(())
}

/// A template directory name from a display name (spec templates §1.0.7): spaces and `-`
/// become `-`, letters are lower-cased, `[a-z0-9_]` kept, the rest dropped, `..` removed;
/// empty gives `unnamed`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ' ' | '-' => out.push('-'),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            _ => {}
        }
    }
    let out = out.replace("..", "");
    if out.is_empty() {
        "unnamed".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_follow_the_guard() {
        for ok in [
            ".env",
            "./file.cfg",
            "foo/./bar",
            "app.venv/config",
            "C:\\Windows",
            "foo/etc/passwd",
            "a b;$(rm -rf x)`",
        ] {
            assert!(RelPath::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            RelPath::parse("./a//b/").map(|p| p.to_string()),
            Ok("a/b".into())
        );
        assert_eq!(RelPath::parse(""), Err(PathError::Empty));
        assert_eq!(RelPath::parse("."), Err(PathError::Empty));
        assert_eq!(RelPath::parse("./"), Err(PathError::Empty));
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../b",
            "foo..bar",
            "..%2F..",
            "a/..",
        ] {
            assert_eq!(RelPath::parse(bad), Err(PathError::Traversal), "{bad}");
        }
        assert_eq!(RelPath::parse("a\0b"), Err(PathError::Nul));
        assert_eq!(
            RelPath::parse("dir/file.txt").map(|p| p.file_name().to_owned()),
            Ok("file.txt".into())
        );
    }

    #[test]
    fn roots_parse() {
        assert_eq!(FileRoot::parse(""), Some(FileRoot::Configs));
        assert_eq!(FileRoot::parse("/home"), Some(FileRoot::Home));
        assert_eq!(FileRoot::parse("/etc"), None);
        assert_eq!(FileRoot::parse("/configs/"), None);
    }

    #[test]
    fn plugin_names() {
        assert_eq!(plugin_name("my-plugin.v2"), Ok(()));
        assert_eq!(plugin_name(""), Err(PluginNameError::Empty));
        assert_eq!(plugin_name("a/b"), Err(PluginNameError::Separator));
        assert_eq!(plugin_name("a..b"), Err(PluginNameError::Separator));
        assert_eq!(plugin_name("MyPlugin"), Err(PluginNameError::Pattern));
        assert_eq!(plugin_name("-x"), Err(PluginNameError::Pattern));
        assert_eq!(plugin_name(&"a".repeat(129)), Err(PluginNameError::Pattern));
    }

    #[test]
    fn names_normalize() {
        for (input, want) in [
            ("My Agent", "my-agent"),
            ("Agent v2.0", "agent-v20"),
            ("../hack", "hack"),
            ("", "unnamed"),
            ("$$$", "unnamed"),
            ("hello_world", "hello_world"),
        ] {
            assert_eq!(normalize_name(input), want, "{input}");
        }
    }
}
