//! Which database to open: `DATABASE_URL`, or the embedded SQLite default.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::ConnectError;

/// The two supported database engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: production, several replicas.
    Postgres,
    /// SQLite: the embedded single-process default.
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        })
    }
}

/// A parsed, checked database location. Its `Display` never shows a password.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// A PostgreSQL server.
    Postgres(PgConnectOptions),
    /// A SQLite database file.
    Sqlite(SqliteConnectOptions),
}

/// The file name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "molecule.db";

impl DatabaseUrl {
    /// Parses a `postgres://`, `postgresql://` or `sqlite:` URL.
    pub fn parse(url: &str) -> Result<Self, ConnectError> {
        let url = url.trim();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => PgConnectOptions::from_str(url)
                .map(DatabaseUrl::Postgres)
                .map_err(|e| ConnectError::InvalidUrl(describe(&e))),
            "sqlite" => SqliteConnectOptions::from_str(url)
                .map(|o| DatabaseUrl::Sqlite(o.create_if_missing(true)))
                .map_err(|e| ConnectError::InvalidUrl(describe(&e))),
            _ => Err(ConnectError::InvalidUrl(
                "expected a postgres://, postgresql:// or sqlite: URL".to_owned(),
            )),
        }
    }

    /// `DATABASE_URL` if given, else the SQLite file `molecule.db` in `data_dir`. The data
    /// directory is created if missing and must be writable.
    pub fn resolve(url: Option<&str>, data_dir: &Path) -> Result<Self, ConnectError> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Self::parse(url),
            None => {
                prepare_data_dir(data_dir)?;
                Ok(DatabaseUrl::Sqlite(
                    SqliteConnectOptions::new()
                        .filename(data_dir.join(SQLITE_FILE))
                        .create_if_missing(true),
                ))
            }
        }
    }

    /// The engine this URL names.
    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Postgres(_) => Backend::Postgres,
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Postgres(o) => write!(
                f,
                "PostgreSQL at {}:{} (database {:?})",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            ),
            DatabaseUrl::Sqlite(o) => write!(f, "SQLite at {}", o.get_filename().display()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An error message for a URL parse failure that cannot carry the URL (and its password).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => {
            let text = inner.to_string();
            // url::ParseError texts name the problem, not the input; keep them short.
            if text.contains("://") || text.contains('@') {
                "malformed URL".to_owned()
            } else {
                text
            }
        }
        _ => "malformed URL".to_owned(),
    }
}

/// Creates the data directory if missing, private to the server's user (mode 0700; a looser
/// existing one is tightened with a warning), and checks that it is writable.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ConnectError> {
    let fail = |error| ConnectError::DataDir {
        path: dir.display().to_string(),
        error,
    };
    crate::private::private_dir(dir).map_err(fail)?;
    // Prove the directory is writable now, rather than failing on the first write later.
    let probe: PathBuf = dir.join(".molecule-write-probe");
    crate::private::private_file(&probe).map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_hides_passwords() {
        let pg = DatabaseUrl::parse("postgres://u:s3cret@db.example:5433/molecule").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        let shown = pg.to_string();
        assert!(shown.contains("db.example:5433"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let lite = DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap();
        assert_eq!(lite.backend(), Backend::Sqlite);
    }

    #[test]
    fn rejects_other_and_malformed_urls_without_echoing_them() {
        for bad in [
            "mysql://u:s3cret@h/db",
            "nonsense",
            "postgres://u:s3cret@h:notaport/db",
        ] {
            let err = DatabaseUrl::parse(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("invalid DATABASE_URL"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn default_is_a_sqlite_file_in_a_created_data_dir() {
        let tmp = tempfile_dir();
        let dir = tmp.join("nested/data");
        let url = DatabaseUrl::resolve(None, &dir).unwrap();
        assert_eq!(url.backend(), Backend::Sqlite);
        assert!(dir.is_dir());
        assert!(url.to_string().ends_with("nested/data/molecule.db"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn unusable_data_dir_is_an_error() {
        let tmp = tempfile_dir();
        let file = tmp.join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err = DatabaseUrl::resolve(None, &file.join("data")).unwrap_err();
        assert!(matches!(err, ConnectError::DataDir { .. }), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("molecule-url-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
