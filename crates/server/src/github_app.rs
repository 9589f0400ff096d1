//! GitHub App installation tokens (spec observability §1.19): an RS256 JWT of the App
//! (`iat` now − 60 s, `exp` now + 10 min, `iss` the App id) exchanged at
//! `POST <api>/app/installations/<id>/access_tokens` for an installation token, which is
//! cached until five minutes before it expires. Concurrent callers wait on one refresh. The
//! private key file is read at each refresh (a rotated key is picked up); no token, JWT or
//! key material is ever logged.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How long before its expiry a cached token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How long one call to GitHub may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The default GitHub API base URL.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The App's settings (`GITHUB_APP_ID`, `GITHUB_APP_INSTALLATION_ID`,
/// `GITHUB_APP_PRIVATE_KEY_FILE`, `GITHUB_API_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// The App id (the JWT's `iss`).
    pub app_id: String,
    /// The installation id (digits).
    pub installation_id: u64,
    /// The PEM private key file of the App.
    pub private_key_file: PathBuf,
    /// The API base URL, without a trailing slash.
    pub api_url: String,
}

/// Why no token could be had. The handler answers 500 `token refresh failed` (or
/// `token refresh failed: empty token`) and logs this; nothing of it reaches a body.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The private key file could not be read.
    #[error("cannot read the private key file")]
    KeyFile(#[source] std::io::Error),
    /// The key or the JWT could not be made (not an RSA PEM key).
    #[error("cannot sign the App JWT: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// GitHub could not be reached or its answer not read.
    #[error("GitHub unreachable: {0}")]
    Http(#[source] reqwest::Error),
    /// GitHub refused (its status).
    #[error("GitHub answered {0}")]
    Status(u16),
    /// The answer had no usable `expires_at`.
    #[error("GitHub's answer has no valid expires_at")]
    BadExpiry,
    /// The answer's token was empty.
    #[error("empty token")]
    EmptyToken,
}

/// An installation token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct InstallationToken {
    /// The token.
    pub token: String,
    /// Its expiry (UTC).
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The token source of one GitHub App installation, with its cache. Cheap to share in an
/// `Arc`.
#[derive(Debug)]
pub struct GithubApp {
    settings: AppSettings,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<InstallationToken>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

#[derive(Deserialize)]
struct AccessTokenAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    expires_at: String,
}

impl GithubApp {
    /// A token source for these settings.
    pub fn new(settings: AppSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            client,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached token while it has more than [`REFRESH_MARGIN`] left, else a new one.
    pub async fn token(&self) -> Result<InstallationToken, TokenError> {
        let mut cached = self.cached.lock().await;
        let fresh_until = OffsetDateTime::now_utc() + REFRESH_MARGIN;
        if let Some(token) = cached.as_ref().filter(|t| t.expires_at > fresh_until) {
            return Ok(token.clone());
        }
        let token = self.refresh().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    async fn refresh(&self) -> Result<InstallationToken, TokenError> {
        let jwt = self.app_jwt(OffsetDateTime::now_utc())?;
        let url = format!(
            "{}/app/installations/{}/access_tokens",
            self.settings.api_url, self.settings.installation_id
        );
        let answer = self
            .client
            .post(url)
            .bearer_auth(jwt)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header(reqwest::header::USER_AGENT, "molecule-rs")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(TokenError::Http)?;
        if !answer.status().is_success() {
            return Err(TokenError::Status(answer.status().as_u16()));
        }
        let body: AccessTokenAnswer = answer.json().await.map_err(TokenError::Http)?;
        if body.token.is_empty() {
            return Err(TokenError::EmptyToken);
        }
        let expires_at = OffsetDateTime::parse(&body.expires_at, &Rfc3339)
            .map_err(|_| TokenError::BadExpiry)?
            .to_offset(time::UtcOffset::UTC);
        Ok(InstallationToken {
            token: body.token,
            expires_at,
        })
    }

    /// The App's JWT at `now`, signed with the key file's RSA key.
    fn app_jwt(&self, now: OffsetDateTime) -> Result<String, TokenError> {
        let pem = std::fs::read(&self.settings.private_key_file).map_err(TokenError::KeyFile)?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(TokenError::Sign)?;
        let claims = Claims {
            iat: now.unix_timestamp() - 60,
            exp: now.unix_timestamp() + 10 * 60,
            iss: &self.settings.app_id,
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &claims, &key).map_err(TokenError::Sign)
    }
}

/// `expires_at` as the API answers it: RFC 3339 UTC, whole seconds.
pub fn format_expiry(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_whole_seconds_utc() {
        let at = OffsetDateTime::parse("2026-07-11T22:14:10.5+02:00", &Rfc3339).unwrap();
        assert_eq!(format_expiry(at), "2026-07-11T20:14:10Z");
    }

    #[test]
    fn tokens_are_redacted_in_debug() {
        let t = InstallationToken {
            token: "ghs_secret".into(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(!format!("{t:?}").contains("ghs_secret"));
    }
}
