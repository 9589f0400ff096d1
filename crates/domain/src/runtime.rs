//! Agent runtimes: which agent framework a workspace runs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The name of an agent runtime, e.g. `langgraph` or `claude-code`.
///
/// The name is validated for shape here (1 to 100 bytes of lowercase ASCII letters, digits, `-`
/// and `_`); whether a runtime is *known* is the runtime registry's decision, made in the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Runtime(String);

/// A string that cannot be a runtime name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRuntime {
    /// The name is empty.
    #[error("runtime must not be empty")]
    Empty,
    /// The name is over 100 bytes.
    #[error("runtime must be at most 100 characters")]
    TooLong,
    /// The name holds a character outside `[a-z0-9_-]`.
    #[error("runtime contains invalid characters")]
    InvalidCharacters,
}

impl Runtime {
    /// The runtime of workspaces whose agent runs outside the platform (no backend).
    pub const EXTERNAL: &'static str = "external";
    /// The runtime a workspace gets when its creator names none.
    pub const DEFAULT: &'static str = "langgraph";
    /// The runtimes the platform knows out of the box (the built-in registry).
    pub const BUILTIN: &'static [&'static str] = &[
        "langgraph",
        "claude-code",
        "hermes",
        "openclaw",
        "codex",
        "crewai",
        "autogen",
        "deepagents",
        "gemini-cli",
        "external",
    ];

    /// Checks and wraps a runtime name.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidRuntime> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidRuntime::Empty);
        }
        if name.len() > 100 {
            return Err(InvalidRuntime::TooLong);
        }
        let ok = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(InvalidRuntime::InvalidCharacters);
        }
        Ok(Self(name))
    }

    /// The default runtime.
    pub fn default_runtime() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The external runtime.
    pub fn external() -> Self {
        Self(Self::EXTERNAL.to_owned())
    }

    /// The runtime's name, as stored and as the API shows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this workspace's agent runs outside the platform.
    pub fn is_external(&self) -> bool {
        self.0 == Self::EXTERNAL
    }
}

impl FromStr for Runtime {
    type Err = InvalidRuntime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Runtime {
    type Error = InvalidRuntime;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<Runtime> for String {
    fn from(r: Runtime) -> String {
        r.0
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_valid_and_include_the_default() {
        for name in Runtime::BUILTIN {
            Runtime::new(*name).unwrap();
        }
        assert!(Runtime::BUILTIN.contains(&Runtime::DEFAULT));
        assert!(Runtime::external().is_external());
        assert!(!Runtime::default_runtime().is_external());
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(Runtime::new(""), Err(InvalidRuntime::Empty));
        assert_eq!(Runtime::new("a".repeat(101)), Err(InvalidRuntime::TooLong));
        assert_eq!(
            Runtime::new("Claude"),
            Err(InvalidRuntime::InvalidCharacters)
        );
        assert_eq!(Runtime::new("a\nb"), Err(InvalidRuntime::InvalidCharacters));
        assert!(serde_json::from_str::<Runtime>("\"../x\"").is_err());
    }
}
