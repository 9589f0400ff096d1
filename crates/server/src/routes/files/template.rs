//! The template fallback of the Files API (spec templates §1.2): when a workspace's compute is
//! not running, reads and listings come from its template directory on the platform host.
//! Symbolic links are never followed here either: a link on the way to a path makes it "not
//! found", a link in a listing is an entry of size 0.

use std::path::{Path, PathBuf};

use molecule_domain::RelPath;
use molecule_domain::paths::normalize_name;
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

/// The template directory of a workspace named `name`: `<configs>/<normalize_name(name)>`,
/// else a directory named `lower(name)` with spaces as `-` (when that is one plain path
/// piece), else the first directory (by name, not `ws-*`) whose `config.yaml` has a first
/// `name:` line equal to `name` ignoring case.
pub(crate) fn template_dir(configs: &Path, name: &str) -> Option<PathBuf> {
    let is_dir = |p: &Path| p.symlink_metadata().is_ok_and(|m| m.is_dir());
    let normalized = configs.join(normalize_name(name));
    if is_dir(&normalized) {
        return Some(normalized);
    }
    let dashed = name.to_lowercase().replace(' ', "-");
    let plain = !dashed.is_empty()
        && !dashed.contains(['/', '\\', '\0'])
        && dashed != "."
        && !dashed.contains("..");
    if plain && is_dir(&configs.join(&dashed)) {
        return Some(configs.join(dashed));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(configs)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with("ws-"))
        .map(|e| e.path())
        .filter(|p| is_dir(p))
        .collect();
    dirs.sort();
    dirs.into_iter().find(|dir| {
        std::fs::read_to_string(dir.join("config.yaml"))
            .ok()
            .and_then(|text| first_name(&text))
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// The value of the first `name:` line of a config.yaml, unquoted.
fn first_name(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("name:"))?;
    let value = line.trim_start_matches("name:").trim();
    Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_name_lines() {
        assert_eq!(
            first_name("x: 1\nname: \"My Agent\"\n"),
            Some("My Agent".into())
        );
        assert_eq!(first_name("description: d\n"), None);
    }
}
