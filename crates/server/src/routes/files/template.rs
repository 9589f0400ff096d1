//! The template fallback of the Files API (spec templates §1.2): when a workspace's compute is
//! not running, reads and listings come from its template directory on the platform host.
//! Symbolic links are never followed here either: a link on the way to a path makes it "not
//! found", a link in a listing is an entry of size 0.

use std::path::{Path, PathBuf};

use molecule_domain::RelPath;
use molecule_provisioner_api::access::{
    FileEntry, LIST_EXCLUDED, MAX_LIST_ENTRIES, MAX_READ_BYTES,
};

/// Why a fallback read or listing gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FallbackError {
    /// Missing, unreadable, or reached through a link.
    NotFound,
    /// Over [`MAX_READ_BYTES`] or [`MAX_LIST_ENTRIES`].
    TooLarge,
}

/// `dir` joined with `path`, each piece checked without following links: every piece but the
/// last must be a directory, none a link.
fn resolve(dir: &Path, path: &RelPath) -> Result<PathBuf, FallbackError> {
    let mut at = dir.to_path_buf();
    for part in path.components() {
        at.push(part);
        let meta = at.symlink_metadata().map_err(|_| FallbackError::NotFound)?;
        if meta.file_type().is_symlink() {
            return Err(FallbackError::NotFound);
        }
    }
    Ok(at)
}

/// Reads a regular file of the template.
pub(crate) fn read(dir: &Path, path: &RelPath) -> Result<Vec<u8>, FallbackError> {
    let file = resolve(dir, path)?;
    let meta = file
        .symlink_metadata()
        .map_err(|_| FallbackError::NotFound)?;
    if !meta.is_file() {
        return Err(FallbackError::NotFound);
    }
    if meta.len() > MAX_READ_BYTES {
        return Err(FallbackError::TooLarge);
    }
    std::fs::read(&file).map_err(|_| FallbackError::NotFound)
}

/// Lists `sub` (the template itself when `None`) to `depth` levels, leaving out
/// [`LIST_EXCLUDED`]; a missing directory is an empty list.
pub(crate) fn list(
    dir: &Path,
    sub: Option<&RelPath>,
    depth: u8,
) -> Result<Vec<FileEntry>, FallbackError> {
    let start = match sub {
        Some(p) => match resolve(dir, p) {
            Ok(at) => at,
            Err(_) => return Ok(Vec::new()),
        },
        None => dir.to_path_buf(),
    };
    let mut out = Vec::new();
    walk(&start, "", depth, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(at: &Path, prefix: &str, depth: u8, out: &mut Vec<FileEntry>) -> Result<(), FallbackError> {
    if depth == 0 {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(at) else {
        return Ok(());
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if LIST_EXCLUDED.contains(&name.as_str()) {
            continue;
        }
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if out.len() >= MAX_LIST_ENTRIES {
            return Err(FallbackError::TooLarge);
        }
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let dir = meta.is_dir();
        let size = if meta.is_file() { meta.len() } else { 0 };
        out.push(FileEntry {
            path: path.clone(),
            size,
            dir,
        });
        if dir {
            walk(&entry.path(), &path, depth - 1, out)?;
        }
    }
    Ok(())
}
