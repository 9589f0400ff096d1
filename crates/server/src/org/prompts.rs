//! Prompt references (`*_prompt_file`, a schedule's `prompt_file`, spec §1.3): inline text
//! wins, else a file under the workspace's `files_dir` inside the org template directory.

use std::path::Path;

use super::paths::inside_root;

/// Largest prompt file read, bytes.
pub const MAX_PROMPT_BYTES: u64 = 256 * 1024;

/// Why a prompt could not be resolved (for messages naming the workspace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// A file reference in an inline template.
    #[error("prompt file {0:?} cannot be used with an inline-template import")]
    Inline(String),
    /// The reference (or the files_dir) leaves its directory.
    #[error("prompt file {0:?} is outside the template directory")]
    Escapes(String),
    /// Missing, unreadable, too large or not UTF-8.
    #[error("prompt file {0:?} cannot be read")]
    Unreadable(String),
}

/// Resolves `(inline, file_ref)` against `org_base` (none: inline template) and `files_dir`.
pub fn resolve(
    inline: &str,
    file_ref: &str,
    org_base: Option<&Path>,
    files_dir: &str,
) -> Result<String, PromptError> {
    if !inline.is_empty() {
        return Ok(inline.to_owned());
    }
    if file_ref.is_empty() {
        return Ok(String::new());
    }
    let Some(base) = org_base else {
        return Err(PromptError::Inline(file_ref.to_owned()));
    };
    let search = if files_dir.is_empty() {
        super::paths::absolute(base).map_err(|_| PromptError::Escapes(file_ref.to_owned()))?
    } else {
        inside_root(base, files_dir).map_err(|_| PromptError::Escapes(file_ref.to_owned()))?
    };
    let file =
        inside_root(&search, file_ref).map_err(|_| PromptError::Escapes(file_ref.to_owned()))?;
    read_text(&file, MAX_PROMPT_BYTES).ok_or_else(|| PromptError::Unreadable(file_ref.to_owned()))
}

/// A UTF-8 regular file of at most `cap` bytes.
pub fn read_text(path: &Path, cap: u64) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > cap {
        return None;
    }
    String::from_utf8(std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("org");
        std::fs::create_dir_all(base.join("role")).unwrap();
        std::fs::write(base.join("role/p.md"), "from file").unwrap();
        std::fs::write(dir.path().join("secret.md"), "no").unwrap();
        std::fs::write(base.join("top.md"), "top").unwrap();
        let b = Some(base.as_path());
        assert_eq!(resolve("inline", "p.md", b, "role").unwrap(), "inline");
        assert_eq!(resolve("", "p.md", b, "role").unwrap(), "from file");
        assert_eq!(resolve("", "", b, "role").unwrap(), "");
        assert_eq!(resolve("", "top.md", b, "").unwrap(), "top");
        assert!(matches!(
            resolve("", "p.md", None, ""),
            Err(PromptError::Inline(_))
        ));
        assert!(
            resolve("", "p.md", None, "")
                .unwrap_err()
                .to_string()
                .contains("inline-template")
        );
        assert!(matches!(
            resolve("", "../top.md", b, "role"),
            Err(PromptError::Escapes(_))
        ));
        assert!(matches!(
            resolve("", "x.md", b, "../escape"),
            Err(PromptError::Escapes(_))
        ));
        assert!(matches!(
            resolve("", "../secret.md", b, ""),
            Err(PromptError::Escapes(_))
        ));
        assert!(matches!(
            resolve("", "nope.md", b, "role"),
            Err(PromptError::Unreadable(_))
        ));
    }
}
