//! Validation of the free-text workspace fields, host directories, template names and secret
//! keys, with the exact messages the API returns.

/// A field value that breaks the rules. The `Display` text is the API's error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// An empty value where one is required.
    #[error("{field} must not be empty")]
    Empty {
        /// The field's name.
        field: &'static str,
    },
    /// A `\n` or `\r` in the value.
    #[error("{field} must not contain newline characters")]
    Newline {
        /// The field's name.
        field: &'static str,
    },
    /// One of `{ } [ ] | > * & !` or another control character in the value.
    #[error("{field} contains invalid characters")]
    InvalidCharacters {
        /// The field's name.
        field: &'static str,
    },
    /// The value is longer than allowed, in bytes.
    #[error("{field} must be at most {max} characters")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// A value that breaks a rule the API does not explain (a path, a template name).
    #[error("invalid {field}")]
    Invalid {
        /// The field's name as the message says it.
        field: &'static str,
    },
    /// A secret key that is not an environment-variable name.
    #[error(
        "{field} must be an environment variable name: a letter or '_' followed by letters, \
         digits or '_'"
    )]
    NotEnvName {
        /// The field's name.
        field: &'static str,
    },
    /// A secret key the platform sets itself in every workspace's environment.
    #[error("{field} {key} is reserved by the platform")]
    Reserved {
        /// The field's name.
        field: &'static str,
        /// The reserved name.
        key: &'static str,
    },
}

/// Environment variables the platform sets in every workspace; a secret cannot replace them
/// (spec provisioner §2.3.6).
pub const RESERVED_ENV: &[&str] = &[
    "WORKSPACE_ID",
    "WORKSPACE_CONFIG_PATH",
    "PLATFORM_URL",
    "MOLECULE_URL",
    "TIER",
];

/// The longest secret key, in bytes.
pub const MAX_ENV_KEY: usize = 128;

/// A secret key: an environment-variable name (`[A-Za-z_][A-Za-z0-9_]*`, at most
/// [`MAX_ENV_KEY`] bytes) that is not one of [`RESERVED_ENV`]. Secrets become environment
/// variables of the workspace, so anything else (`=`, NUL, newlines, spaces, `../`) could
/// corrupt or inject into that environment.
pub fn env_key(value: &str) -> Result<(), FieldError> {
    const FIELD: &str = "key";
    if value.is_empty() {
        return Err(FieldError::Empty { field: FIELD });
    }
    if value.len() > MAX_ENV_KEY {
        return Err(FieldError::TooLong {
            field: FIELD,
            max: MAX_ENV_KEY,
        });
    }
    let mut bytes = value.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(FieldError::NotEnvName { field: FIELD });
    }
    if let Some(key) = RESERVED_ENV.iter().find(|r| **r == value) {
        return Err(FieldError::Reserved { field: FIELD, key });
    }
    Ok(())
}

/// Characters refused in names and roles (they break the generated YAML and shell snippets).
const FORBIDDEN: &[char] = &['{', '}', '[', ']', '|', '>', '*', '&', '!'];

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.contains(['\n', '\r']) {
        return Err(FieldError::Newline { field });
    }
    if value.contains(FORBIDDEN) || value.chars().any(char::is_control) {
        return Err(FieldError::InvalidCharacters { field });
    }
    if value.len() > max {
        return Err(FieldError::TooLong { field, max });
    }
    Ok(())
}

/// A workspace name: required, at most 255 bytes, one line, none of `{ } [ ] | > * & !`.
pub fn name(value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::Empty { field: "name" });
    }
    check_text("name", value, 255)
}

/// A workspace role: at most 1000 bytes, with the same character rules as a name.
pub fn role(value: &str) -> Result<(), FieldError> {
    check_text("role", value, 1000)
}

/// A model name: at most 100 bytes, one line.
pub fn model(value: &str) -> Result<(), FieldError> {
    if value.contains(['\n', '\r']) {
        return Err(FieldError::Newline { field: "model" });
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::InvalidCharacters { field: "model" });
    }
    if value.len() > 100 {
        return Err(FieldError::TooLong {
            field: "model",
            max: 100,
        });
    }
    Ok(())
}

/// Host directories a workspace may never mount.
pub const SYSTEM_DIRS: &[&str] = &[
    "/etc", "/var", "/proc", "/sys", "/dev", "/boot", "/sbin", "/bin", "/lib", "/usr",
];

/// A host directory to bind-mount into a workspace: an absolute path without `..`, neither
/// `/` nor equal to or under one of [`SYSTEM_DIRS`]. The check is on the path's components, so
/// `//etc` and `/./etc` are `/etc` as they are for the kernel.
pub fn workspace_dir(dir: &str) -> Result<(), FieldError> {
    use std::path::{Component, Path};
    let invalid = FieldError::Invalid {
        field: "workspace directory",
    };
    let path = Path::new(dir);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid);
    }
    let first = path.components().find_map(|c| match c {
        Component::Normal(name) => name.to_str(),
        _ => None,
    });
    let allowed = first.is_some_and(|first| {
        !SYSTEM_DIRS
            .iter()
            .any(|d| d.strip_prefix('/') == Some(first))
    });
    if allowed { Ok(()) } else { Err(invalid) }
}

/// A template name: 1 to 200 bytes of `[A-Za-z0-9._-]`, not starting with `.` (so never a path
/// out of the template directory).
pub fn template_name(name: &str) -> Result<(), FieldError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(FieldError::Invalid { field: "template" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_the_api() {
        assert_eq!(
            name("a\nb").unwrap_err().to_string(),
            "name must not contain newline characters"
        );
        assert_eq!(
            name("a{b").unwrap_err().to_string(),
            "name contains invalid characters"
        );
        assert_eq!(
            name(&"x".repeat(256)).unwrap_err().to_string(),
            "name must be at most 255 characters"
        );
        assert_eq!(
            role(&"x".repeat(1001)).unwrap_err().to_string(),
            "role must be at most 1000 characters"
        );
        assert_eq!(
            name("  ").unwrap_err().to_string(),
            "name must not be empty"
        );
    }

    #[test]
    fn secret_keys_are_environment_variable_names() {
        for ok in [
            "OPENAI_API_KEY",
            "_X",
            "a1",
            "MODEL_PROVIDER",
            &"K".repeat(128),
        ] {
            env_key(ok).unwrap();
        }
        let refused = [
            "",
            "1ABC",
            "A=B",
            "A B",
            "A\0B",
            "A\nB",
            "../etc",
            "A-B",
            "ÄB",
            "A\u{202e}B",
            &"K".repeat(129),
            &"K".repeat(900 * 1024),
        ];
        for bad in refused {
            assert!(env_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            env_key("A=B").unwrap_err().to_string(),
            "key must be an environment variable name: a letter or '_' followed by letters, \
             digits or '_'"
        );
        assert_eq!(
            env_key("WORKSPACE_ID").unwrap_err().to_string(),
            "key WORKSPACE_ID is reserved by the platform"
        );
        assert_eq!(
            env_key(&"K".repeat(129)).unwrap_err().to_string(),
            "key must be at most 128 characters"
        );
    }

    #[test]
    fn ordinary_values_pass() {
        name("Research lead — Zoë").unwrap();
        name(&"x".repeat(255)).unwrap();
        role("").unwrap();
        role("Writes the weekly report, then files it.").unwrap();
        model("anthropic:claude-sonnet-4").unwrap();
        for c in ['}', ']', '|', '>', '*', '&', '!', '\t'] {
            assert!(name(&format!("a{c}b")).is_err(), "{c:?}");
        }
    }

    #[test]
    fn ordinary_directories_pass() {
        for dir in [
            "/home/user/project",
            "/etcetera",
            "/srv/./data",
            "/opt//x",
            "/usr2",
        ] {
            workspace_dir(dir).unwrap();
        }
    }

    #[test]
    fn system_directories_and_relative_paths_are_refused() {
        for dir in [
            "//etc",
            "/./etc",
            "/usr//",
            "//",
            "/",
            "/var/lib/x",
            "/home/../etc",
            "x",
        ] {
            assert_eq!(
                workspace_dir(dir).unwrap_err().to_string(),
                "invalid workspace directory",
                "{dir}"
            );
        }
    }

    #[test]
    fn template_names_stay_in_their_directory() {
        template_name("claude-code_v2.1").unwrap();
        for bad in ["", ".hidden", "../x", "a/b", &"t".repeat(201)] {
            assert_eq!(
                template_name(bad).unwrap_err().to_string(),
                "invalid template"
            );
        }
    }
}
