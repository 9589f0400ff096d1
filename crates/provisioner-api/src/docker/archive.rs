//! The tar archives the Docker archive API speaks.

use std::io::Read;

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
}
