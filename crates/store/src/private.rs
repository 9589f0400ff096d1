//! Private files: the data directory and the SQLite database hold secrets (tokens' hashes,
//! encrypted secret values and their key's neighbours), so they are readable by the server's
//! user only: directories 0700, files 0600. Anything found looser is tightened, with a
//! warning. (On other platforms than Unix these are plain creations.)
//!
//! No umask is changed (the workspace forbids `unsafe`): each file is created with its mode.
//! SQLite creates its `-wal`, `-shm` and `-journal` files with the mode of the database file,
//! so creating that one 0600 before the first connection is enough for them.

use std::io;
use std::path::Path;

/// The mode of a private directory.
pub const DIR_MODE: u32 = 0o700;
/// The mode of a private file.
pub const FILE_MODE: u32 = 0o600;

/// The suffixes of the files SQLite keeps next to a database.
const SQLITE_SIDE_FILES: &[&str] = &["-wal", "-shm", "-journal"];

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one to 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        tighten(dir, DIR_MODE)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates the file `path` empty with mode 0600 if it is missing (never truncates), or
/// tightens an existing one to 0600.
pub fn private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    drop(options.open(path)?);
    #[cfg(unix)]
    tighten(path, FILE_MODE)?;
    Ok(())
}

/// Makes the SQLite database `path` private before it is opened: the database file is
/// created 0600 if missing, and it and its side files are tightened if they exist.
pub fn private_sqlite_files(path: &Path) -> io::Result<()> {
    private_file(path)?;
    #[cfg(unix)]
    for suffix in SQLITE_SIDE_FILES {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match tighten(Path::new(&side), FILE_MODE) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Sets the permission bits of `path` to `mode` if it grants anything more, with a warning.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode == 0 {
        return Ok(());
    }
    tracing::warn!(
        path = %path.display(),
        "this file or directory was open to other users (mode {current:o}): setting it to {mode:o}"
    );
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_loose_modes() {
        let tmp = std::env::temp_dir().join(format!("molecule-private-{}", uuid::Uuid::new_v4()));
        let dir = tmp.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.join("a")), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let db = dir.join("x.db");
        private_sqlite_files(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        std::fs::write(&db, b"kept").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.join("x.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o664)).unwrap();
        private_sqlite_files(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(std::fs::read(&db).unwrap(), b"kept", "never truncated");
        assert!(
            !dir.join("x.db-shm").exists(),
            "missing side files stay missing"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
