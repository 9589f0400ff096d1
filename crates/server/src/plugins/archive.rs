//! Archives: a GitHub tarball unpacked into memory with every entry checked (no `..`, no
//! absolute path, no symlink or hard link: the whole archive is refused), bounded in size
//! while it is read; and a plugin packed as a `.tar.gz` in memory for download.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use molecule_domain::RelPath;

use super::Files;

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// An entry with `..`, an absolute path, a link or a device.
    #[error("unsafe archive entry: {0}")]
    Unsafe(String),
    /// The files add up to more than the cap.
    #[error("archive larger than the limit")]
    TooLarge,
    /// Not a gzip'd tar.
    #[error("unreadable archive: {0}")]
    Corrupt(String),
}

/// Unpacks a gzip'd tar, dropping the first path component (GitHub's `owner-repo-sha/`),
/// into memory. Directories are implied; any link, special file or escaping path refuses
/// the archive; regular files may add up to `cap` bytes.
pub fn unpack_tarball(gz: &[u8], cap: u64) -> Result<Files, ArchiveError> {
    let mut archive = tar::Archive::new(GzDecoder::new(gz));
    let mut files = Files::new();
    let mut total: u64 = 0;
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if raw.starts_with('/') || raw.split('/').any(|c| c == "..") {
            return Err(ArchiveError::Unsafe(raw));
        }
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
        {
            continue;
        }
        if !(kind.is_file() || kind.is_dir()) {
            return Err(ArchiveError::Unsafe(raw));
        }
        // Drop GitHub's top-level directory.
        let Some((_, rel)) = raw.split_once('/') else {
            if kind.is_dir() {
                continue;
            }
            return Err(ArchiveError::Unsafe(raw));
        };
        let rel = rel.trim_end_matches('/');
        if rel.is_empty() || kind.is_dir() {
            continue;
        }
        let path = RelPath::parse(rel).map_err(|_| ArchiveError::Unsafe(raw.clone()))?;
        let size = entry
            .header()
            .size()
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        total = total.checked_add(size).ok_or(ArchiveError::TooLarge)?;
        if total > cap {
            return Err(ArchiveError::TooLarge);
        }
        let mut bytes = Vec::new();
        (&mut entry)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        files.insert(path.as_str().to_owned(), bytes);
    }
    Ok(files)
}

/// Packs `files` as a `.tar.gz`: entries relative to the plugin root, directories (0755)
/// before their files (0644), no links.
pub fn pack(files: &Files) -> Result<Vec<u8>, std::io::Error> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut dirs = std::collections::BTreeSet::new();
    for path in files.keys() {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            dirs.insert(format!("{acc}/"));
        }
    }
    for dir in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        builder.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        builder.append_data(&mut h, path, bytes.as_slice())?;
    }
    let gz = builder.into_inner()?;
    let mut out = gz.finish()?;
    out.flush()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_size(0);
                h.set_link_name("../../etc/passwd").unwrap();
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            } else {
                // Write the name raw so `..` reaches the reader as it would from a hostile archive.
                let name = h.as_old_mut();
                name.name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpacks_and_strips_the_top_dir() {
        let gz = tarball(&[
            ("o-r-abc/", tar::EntryType::Directory, b""),
            ("o-r-abc/plugin.yaml", tar::EntryType::Regular, b"name: r\n"),
            ("o-r-abc/rules/a.md", tar::EntryType::Regular, b"rule"),
        ]);
        let files = unpack_tarball(&gz, 1024).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["plugin.yaml", "rules/a.md"]
        );
        assert_eq!(unpack_tarball(&gz, 5), Err(ArchiveError::TooLarge));
    }

    #[test]
    fn refuses_hostile_entries() {
        for entries in [
            vec![("o-r/../../evil", tar::EntryType::Regular, &b"x"[..])],
            vec![("/etc/evil", tar::EntryType::Regular, &b"x"[..])],
            vec![("o-r/link", tar::EntryType::Symlink, &b""[..])],
            vec![("o-r/hard", tar::EntryType::Link, &b""[..])],
        ] {
            let gz = tarball(&entries);
            assert!(
                matches!(unpack_tarball(&gz, 1024), Err(ArchiveError::Unsafe(_))),
                "{:?}",
                entries[0].0
            );
        }
    }

    #[test]
    fn packs_relative_entries() {
        let files = Files::from([
            ("plugin.yaml".to_owned(), b"name: p\n".to_vec()),
            ("skills/s/SKILL.md".to_owned(), b"s".to_vec()),
        ]);
        let gz = pack(&files).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut a = tar::Archive::new(GzDecoder::new(gz.as_slice()));
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with('/') && !n.contains("..")),
            "{names:?}"
        );
        assert!(
            names.contains(&"plugin.yaml".to_owned())
                && names.contains(&"skills/s/SKILL.md".to_owned())
        );
    }
}
