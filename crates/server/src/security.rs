//! The security settings fixed at boot: dev mode or strict, the admin token (configured, or
//! generated once into the data directory), test tokens and WebSocket origins.
//!
//! - *Dev mode* (`MOLECULE_ENV=development|dev`, no `ADMIN_TOKEN`): every guard passes.
//! - Otherwise *strict*: admin is the admin token. A workspace token is never admin. Nothing
//!   fails open.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The security settings fixed at boot.
#[derive(Clone)]
pub struct Security {
    dev_mode: bool,
    admin_token: Option<String>,
    test_tokens: bool,
    ws_origins: Option<Vec<String>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("dev_mode", &self.dev_mode)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("test_tokens", &self.test_tokens)
            .field("ws_origins", &self.ws_origins)
            .finish()
    }
}

/// The file, in the data directory, that keeps a generated admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin_token";

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the admin token file {path}: {error}")]
pub struct AdminTokenError {
    path: String,
    error: std::io::Error,
}

impl Security {
    /// Dev mode: every guard passes.
    pub fn dev() -> Self {
        Self {
            dev_mode: true,
            admin_token: None,
            test_tokens: true,
            ws_origins: None,
        }
    }

    /// Strict mode with this admin token.
    pub fn strict(admin_token: String, test_tokens: bool) -> Self {
        Self {
            dev_mode: false,
            admin_token: Some(admin_token),
            test_tokens,
            ws_origins: None,
        }
    }

    /// From the configuration: dev mode, the configured admin token, or one generated once
    /// and kept in `<data_dir>/admin_token` (0600). Logs where it is, never its value.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, AdminTokenError> {
        if config.dev_mode() {
            return Ok(Self::dev().with_ws_origins(config.ws_origins()));
        }
        let configured = config
            .admin_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let token = match configured {
            Some(t) => t.to_owned(),
            None => load_or_generate(&config.data_dir)?,
        };
        Ok(Self::strict(token, config.test_tokens_enabled()).with_ws_origins(config.ws_origins()))
    }

    /// With the origins a WebSocket upgrade must come from (`None`: any origin, or none).
    /// Entries are compared trimmed and case-insensitively.
    pub fn with_ws_origins(mut self, origins: Option<Vec<String>>) -> Self {
        self.ws_origins = origins.map(|list| {
            list.iter()
                .map(|o| o.trim().to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect()
        });
        self
    }

    /// Whether a WebSocket upgrade with this `Origin` header is allowed: always when no list
    /// is configured; otherwise the origin must be in it (a missing one never is).
    pub fn ws_origin_allowed(&self, origin: Option<&str>) -> bool {
        match &self.ws_origins {
            None => true,
            Some(list) => origin.is_some_and(|o| {
                let o = o.trim().to_ascii_lowercase();
                list.contains(&o)
            }),
        }
    }

    /// Whether dev mode is on.
    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }

    /// Whether the test-token route exists.
    pub fn test_tokens(&self) -> bool {
        self.test_tokens
    }

    /// Whether `bearer` is the admin token (constant-time comparison).
    pub fn is_admin_token(&self, bearer: &str) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), bearer.as_bytes()))
    }
}

fn load_or_generate(data_dir: &Path) -> Result<String, AdminTokenError> {
    let path: PathBuf = data_dir.join(ADMIN_TOKEN_FILE);
    let fail = |error| AdminTokenError {
        path: path.display().to_string(),
        error,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            molecule_store::private::private_file(&path).map_err(fail)?;
            tracing::info!(path = %path.display(), "admin token read from the data directory");
            return Ok(text.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    molecule_store::private::private_dir(data_dir).map_err(fail)?;
    let token = molecule_store::random_token().map_err(|e| fail(std::io::Error::other(e)))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(fail)?;
    file.write_all(token.as_bytes()).map_err(fail)?;
    tracing::warn!(
        path = %path.display(),
        "ADMIN_TOKEN is not set: generated an admin token and saved it in this file (mode 0600)"
    );
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_comparison() {
        let s = Security::strict("s3cret".into(), false);
        assert!(s.is_admin_token("s3cret"));
        assert!(!s.is_admin_token("s3cre"));
        assert!(!s.is_admin_token(""));
        assert!(!Security::dev().is_admin_token(""));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn ws_origin_check_only_when_configured() {
        let open = Security::dev();
        assert!(open.ws_origin_allowed(None));
        assert!(open.ws_origin_allowed(Some("https://evil.example")));
        let strict = Security::strict("t".into(), false)
            .with_ws_origins(Some(vec![" HTTPS://Canvas.example ".into()]));
        assert!(strict.ws_origin_allowed(Some("https://canvas.example")));
        assert!(strict.ws_origin_allowed(Some(" https://CANVAS.example")));
        assert!(!strict.ws_origin_allowed(Some("https://evil.example")));
        assert!(!strict.ws_origin_allowed(None));
    }

    #[test]
    fn generated_admin_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path()).unwrap();
        assert_eq!(first.len(), 43);
        let again = load_or_generate(dir.path()).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
