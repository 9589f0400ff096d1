//! The key that encrypts secret values at rest (spec: auth-router §5.1).
//!
//! - `SECRETS_ENCRYPTION_KEY` set: it must parse (standard base64 of 32 bytes, or 32 raw
//!   bytes), in every mode; a malformed key refuses to start rather than silently storing
//!   plaintext or using another key.
//! - Unset in production (`MOLECULE_ENV` prod/production): refuses to start.
//! - Unset elsewhere: a key generated once into `<data dir>/secrets_key` (mode 0600, base64),
//!   like the admin token, so that values are never stored in plaintext. The log names the
//!   file, never the key.

use std::io::Write;
use std::path::Path;

use molecule_store::{KeyError, SecretKey};

use crate::config::Config;

/// The file, in the data directory, that keeps a generated secrets key.
pub const SECRETS_KEY_FILE: &str = "secrets_key";

/// Why the server cannot have a secrets key.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    /// Production without a key.
    #[error(
        "SECRETS_ENCRYPTION_KEY is required when MOLECULE_ENV is prod/production \
         (base64 of 32 random bytes, e.g. `openssl rand -base64 32`); refusing to start"
    )]
    Missing,
    /// The configured key does not parse.
    #[error("invalid SECRETS_ENCRYPTION_KEY: {0}; refusing to start")]
    Invalid(KeyError),
    /// The key file holds something that is not a key.
    #[error("the secrets key file {path} is not a valid key: {error}; refusing to start")]
    BadFile {
        /// Where the key file is.
        path: String,
        /// What is wrong with its content.
        error: KeyError,
    },
    /// The key file cannot be read or written.
    #[error("cannot set up the secrets key file {path}: {error}")]
    Io {
        /// Where the key file is.
        path: String,
        /// The I/O failure.
        error: std::io::Error,
    },
}

/// The key for this configuration (see the module documentation).
pub fn load(config: &Config) -> Result<SecretKey, SecretKeyError> {
    let configured = config
        .secrets_encryption_key
        .as_deref()
        .filter(|k| !k.trim().is_empty());
    match configured {
        Some(text) => SecretKey::parse(text.trim()).map_err(SecretKeyError::Invalid),
        None if config.production() => Err(SecretKeyError::Missing),
        None => load_or_generate(&config.data_dir),
    }
}

fn load_or_generate(data_dir: &Path) -> Result<SecretKey, SecretKeyError> {
    let path = data_dir.join(SECRETS_KEY_FILE);
    let shown = path.display().to_string();
    let io = |error| SecretKeyError::Io {
        path: shown.clone(),
        error,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            molecule_store::private::private_file(&path).map_err(io)?;
            tracing::info!(path = %shown, "secrets encryption key read from the data directory");
            return SecretKey::parse(text.trim()).map_err(|error| SecretKeyError::BadFile {
                path: shown.clone(),
                error,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    molecule_store::private::private_dir(data_dir).map_err(io)?;
    let key = SecretKey::generate().map_err(|e| io(std::io::Error::other(e)))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io)?;
    file.write_all(key.to_base64().as_bytes()).map_err(io)?;
    tracing::warn!(
        path = %shown,
        "SECRETS_ENCRYPTION_KEY is not set: generated a secrets encryption key and saved it in \
         this file (mode 0600); keep it with the database, or secrets cannot be read"
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    fn config(args: &[&str], dir: &Path) -> Config {
        let mut all = vec!["molecule-server", "--data-dir", dir.to_str().unwrap()];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn production_needs_a_valid_key() {
        let dir = tempfile::tempdir().unwrap();
        for env in ["production", "prod", " PRODUCTION "] {
            let c = config(&["--env", env, "--secrets-encryption-key", ""], dir.path());
            assert!(matches!(load(&c), Err(SecretKeyError::Missing)), "{env}");
        }
        let c = config(
            &[
                "--env",
                "production",
                "--secrets-encryption-key",
                "too-short",
            ],
            dir.path(),
        );
        assert!(matches!(load(&c), Err(SecretKeyError::Invalid(_))));
        let good = SecretKey::generate().unwrap();
        let c = config(
            &[
                "--env",
                "production",
                "--secrets-encryption-key",
                &good.to_base64(),
            ],
            dir.path(),
        );
        assert_eq!(load(&c).unwrap(), good);
        assert!(!dir.path().join(SECRETS_KEY_FILE).exists());
    }

    #[test]
    fn elsewhere_a_key_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            &["--env", "staging", "--secrets-encryption-key", ""],
            dir.path(),
        );
        let first = load(&c).unwrap();
        assert_eq!(load(&c).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRETS_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A malformed configured key refuses to start in every mode.
        let c = config(
            &["--env", "dev", "--secrets-encryption-key", "nope"],
            dir.path(),
        );
        assert!(matches!(load(&c), Err(SecretKeyError::Invalid(_))));
    }
}
