//! `inside_root(root, user)` (spec templates §1.0.5): a user-given path joined under a root,
//! lexically cleaned, that must stay inside it.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused (for logs; handlers answer their own message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathEscape {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path is absolute.
    #[error("absolute path")]
    Absolute,
    /// The joined path leaves the root.
    #[error("path escapes its root")]
    Escapes,
    /// The root cannot be made absolute.
    #[error("root unavailable")]
    Root,
}

/// Lexically cleans `path`: `.` dropped, `..` pops a component (never above the start).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The absolute, cleaned form of `root`.
pub fn absolute(root: &Path) -> Result<PathBuf, PathEscape> {
    let abs = std::path::absolute(root).map_err(|_| PathEscape::Root)?;
    Ok(clean(&abs))
}

/// `root` joined with `user`, cleaned; it must be `root` itself or under it (the separator
/// guard refuses `/tmp/x-sibling` for `/tmp/x`). Lexical only: symlinks are not resolved.
pub fn inside_root(root: &Path, user: &str) -> Result<PathBuf, PathEscape> {
    if user.is_empty() {
        return Err(PathEscape::Empty);
    }
    if user.contains('\0') {
        return Err(PathEscape::Escapes);
    }
    if Path::new(user).is_absolute() {
        return Err(PathEscape::Absolute);
    }
    let root = absolute(root)?;
    let joined = clean(&root.join(user));
    if joined == root || joined.starts_with(&root) {
        Ok(joined)
    } else {
        Err(PathEscape::Escapes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors() {
        let root = Path::new("/tmp/org-root");
        for ok in ["molecule-dev", "a/b/c", "a/../b", "."] {
            assert!(inside_root(root, ok).is_ok(), "{ok}");
        }
        for bad in [
            "../etc",
            "../../etc/passwd",
            "molecule-dev/../../..",
            "../../../../../../../../../etc",
            "/etc/passwd",
            "",
            "../org-root-sibling",
            "a\0b",
        ] {
            assert!(inside_root(root, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            inside_root(root, "a/./b").unwrap(),
            PathBuf::from("/tmp/org-root/a/b")
        );
    }
}
