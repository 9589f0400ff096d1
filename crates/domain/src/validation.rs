//! Validation of the free-text workspace fields, with the exact messages the API returns.

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
}
