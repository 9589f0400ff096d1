//! The tar archives the Docker archive API speaks: what the backend uploads (secrets, the Files
//! API's writes) and how it reads what it downloads (one file, a listing).
//!
//! Entry names written here come from [`RelPath`]s (relative, no `..`, no NUL) and the `tar`
//! crate refuses absolute and `..` names as well, so an entry always lands under the upload's
//! destination. Reading never follows a symbolic link: a link is an entry like any other.

use std::collections::BTreeSet;
use std::io::Read;

use molecule_domain::RelPath;

use crate::access::{FileEntry, LIST_EXCLUDED, Refusal};

/// The mode of directories the Files API writes.
pub(crate) const DIR_MODE: u32 = 0o755;
/// The mode of files the Files API writes.
pub(crate) const FILE_MODE: u32 = 0o644;

/// A tar of regular files `(path, bytes, mode)`, owned by `uid:uid`.
pub(crate) fn files(files: &[(&str, &[u8], u32)], uid: u64) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_uid(uid);
        header.set_gid(uid);
        header.set_mtime(0);
        builder.append_data(&mut header, path, *bytes)?;
    }
    builder.into_inner()
}

/// The content of the first regular file in a tar, if there is one.
pub(crate) fn first_file(tar: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() == tar::EntryType::Regular {
            let mut out = Vec::new();
            entry.read_to_end(&mut out)?;
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// Why [`tree`] could not build an archive.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TreeError {
    /// One path is also the parent directory of another.
    #[error("{0}")]
    Refused(Refusal),
    /// The tar writer failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(uid);
    header.set_mtime(0);
    header
}

/// A tar of `files` at their relative paths (files [`FILE_MODE`]) with an entry for every
/// parent directory ([`DIR_MODE`]), all owned by `uid:uid`. A path that is also the parent of
/// another is refused (the upload would replace one by the other).
pub(crate) fn tree(files: &[(RelPath, Vec<u8>)], uid: u64) -> Result<Vec<u8>, TreeError> {
    let mut dirs = BTreeSet::new();
    for (path, _) in files {
        let parts: Vec<&str> = path.components().collect();
        for end in 1..parts.len() {
            dirs.insert(parts[..end].join("/"));
        }
    }
    if files.iter().any(|(path, _)| dirs.contains(path.as_str())) {
        return Err(TreeError::Refused(Refusal::NotADirectory));
    }
    let mut builder = tar::Builder::new(Vec::new());
    for dir in &dirs {
        let mut head = header(tar::EntryType::Directory, DIR_MODE, uid, 0);
        builder.append_data(&mut head, format!("{dir}/"), std::io::empty())?;
    }
    for (path, bytes) in files {
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let mut head = header(tar::EntryType::Regular, FILE_MODE, uid, size);
        builder.append_data(&mut head, path.as_str(), bytes.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

/// Why [`listing`] stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListingError {
    /// More than the allowed number of entries.
    #[error("more than {0} entries")]
    TooMany(usize),
    /// The archive could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The entries of a directory's archive (as the Docker archive API answers it: every name
/// starts with the directory's own name) down to `depth` levels, relative to that directory,
/// sorted by path. Names in [`LIST_EXCLUDED`] are left out with everything below them;
/// symbolic links are listed as files of size 0 and never followed. File contents are read
/// past, not kept. More than `max` entries is an error; so is scanning more than `max * 20`.
pub(crate) fn listing<R: Read>(
    reader: R,
    depth: u8,
    max: usize,
) -> Result<Vec<FileEntry>, ListingError> {
    let mut out = Vec::new();
    let scan_limit = max.saturating_mul(20);
    let mut archive = tar::Archive::new(reader);
    for (scanned, entry) in archive.entries()?.enumerate() {
        if scanned >= scan_limit {
            return Err(ListingError::TooMany(max));
        }
        let entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let parts: Vec<&str> = name
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .skip(1)
            .collect();
        if parts.is_empty()
            || parts.len() > usize::from(depth)
            || parts
                .iter()
                .any(|p| LIST_EXCLUDED.contains(p) || *p == "..")
        {
            continue;
        }
        let dir = entry.header().entry_type() == tar::EntryType::Directory;
        let size = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => entry.header().size()?,
            _ => 0,
        };
        if out.len() >= max {
            return Err(ListingError::TooMany(max));
        }
        out.push(FileEntry {
            path: parts.join("/"),
            size,
            dir,
        });
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> std::io::Result<()> {
        let tar = files(&[(".auth_token", b"tok", 0o600)], 1000)?;
        let mut archive = tar::Archive::new(&tar[..]);
        let entry = archive
            .entries()?
            .next()
            .ok_or(std::io::ErrorKind::NotFound)??;
        assert_eq!(entry.header().mode()?, 0o600);
        assert_eq!(entry.header().uid()?, 1000);
        assert_eq!(first_file(&tar)?, Some(b"tok".to_vec()));
        assert_eq!(first_file(&files(&[], 0)?)?, None);
        Ok(())
    }

    fn rel(p: &str) -> RelPath {
        RelPath::parse(p).unwrap()
    }

    #[test]
    fn trees_have_parents_modes_and_owner() -> std::io::Result<()> {
        let tar = tree(
            &[
                (rel("a/b/c.txt"), b"c".to_vec()),
                (rel("a/d.txt"), vec![0, 159, 146, 150]),
                (rel("$(id);touch x"), b"lit".to_vec()),
            ],
            1000,
        )
        .unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let head = entry.header().clone();
            let name = entry.path()?.to_string_lossy().into_owned();
            assert_eq!((head.uid()?, head.gid()?), (1000, 1000), "{name}");
            let mut body = Vec::new();
            entry.read_to_end(&mut body)?;
            seen.push((name, head.mode()?, head.entry_type().is_dir(), body));
        }
        assert_eq!(
            seen,
            vec![
                ("a/".into(), 0o755, true, vec![]),
                ("a/b/".into(), 0o755, true, vec![]),
                ("a/b/c.txt".into(), 0o644, false, b"c".to_vec()),
                ("a/d.txt".into(), 0o644, false, vec![0, 159, 146, 150]),
                ("$(id);touch x".into(), 0o644, false, b"lit".to_vec()),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_file_that_is_also_a_parent_is_refused() {
        let err = tree(&[(rel("a"), vec![]), (rel("a/b"), vec![])], 1000).unwrap_err();
        assert!(matches!(err, TreeError::Refused(Refusal::NotADirectory)));
    }

    #[test]
    fn the_tar_writer_refuses_names_that_leave_the_destination() {
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            let mut head = header(tar::EntryType::Regular, FILE_MODE, 0, 0);
            let mut builder = tar::Builder::new(Vec::new());
            assert!(
                builder
                    .append_data(&mut head, bad, std::io::empty())
                    .is_err(),
                "{bad}"
            );
        }
    }

    /// An archive shaped like the Docker archive API's answer for `/configs`.
    fn docker_like() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, body: &[u8]| {
            let size = body.len() as u64;
            let mut head = header(kind, 0o644, 0, size);
            if kind == tar::EntryType::Symlink {
                head.set_link_name("/etc/passwd").unwrap();
            }
            builder.append_data(&mut head, name, body).unwrap();
        };
        add("configs/", tar::EntryType::Directory, b"");
        add("configs/a.txt", tar::EntryType::Regular, b"hello");
        add("configs/sub/", tar::EntryType::Directory, b"");
        add("configs/sub/b.txt", tar::EntryType::Regular, b"xy");
        add("configs/sub/deep/", tar::EntryType::Directory, b"");
        add("configs/sub/deep/c", tar::EntryType::Regular, b"");
        add("configs/.git/", tar::EntryType::Directory, b"");
        add("configs/.git/HEAD", tar::EntryType::Regular, b"ref");
        add("configs/.DS_Store", tar::EntryType::Regular, b"x");
        add("configs/escape", tar::EntryType::Symlink, b"");
        builder.into_inner().unwrap()
    }

    fn entry(path: &str, size: u64, dir: bool) -> FileEntry {
        FileEntry {
            path: path.into(),
            size,
            dir,
        }
    }

    #[test]
    fn listings_follow_depth_and_exclusions_and_never_links() {
        let tar = docker_like();
        assert_eq!(
            listing(&tar[..], 1, 100).unwrap(),
            vec![
                entry("a.txt", 5, false),
                entry("escape", 0, false),
                entry("sub", 0, true),
            ]
        );
        assert_eq!(
            listing(&tar[..], 3, 100).unwrap(),
            vec![
                entry("a.txt", 5, false),
                entry("escape", 0, false),
                entry("sub", 0, true),
                entry("sub/b.txt", 2, false),
                entry("sub/deep", 0, true),
                entry("sub/deep/c", 0, false),
            ]
        );
        assert!(matches!(
            listing(&tar[..], 3, 2),
            Err(ListingError::TooMany(2))
        ));
        assert_eq!(listing(&[][..], 1, 10).unwrap(), vec![]);
    }
}
