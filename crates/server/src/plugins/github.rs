//! The `github://` fetch: the repository tarball over the GitHub REST API
//! (`GET {api}/repos/{owner}/{repo}/tarball[/{ref}]`, with an installation token when one is
//! given, else anonymous; redirects followed, the token never sent to another host), read
//! with a size bound and unpacked in memory. No `git` process is run.

use super::Files;
use super::archive::{ArchiveError, unpack_tarball};
use super::source::GithubSpec;

/// How a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No such repository or ref.
    #[error("not found")]
    NotFound,
    /// Out of time.
    #[error("deadline exceeded")]
    Deadline,
    /// The archive is over the size cap.
    #[error("too large")]
    TooLarge,
    /// The archive has an unsafe entry.
    #[error(transparent)]
    Unsafe(ArchiveError),
    /// Anything else (auth, network, corrupt archive).
    #[error("{0}")]
    Other(String),
}

/// Fetches and unpacks `spec` from `api_base` (with `token` as the bearer, if any).
pub async fn fetch(
    client: &reqwest::Client,
    api_base: &str,
    token: Option<&str>,
    spec: &GithubSpec,
    cap: u64,
) -> Result<Files, FetchError> {
    let mut url = format!("{api_base}/repos/{}/{}/tarball", spec.owner, spec.repo);
    if let Some(r) = &spec.reference {
        url.push('/');
        url.push_str(r);
    }
    let mut request = client
        .get(&url)
        .header(reqwest::header::USER_AGENT, "molecule-rs")
        .header(reqwest::header::ACCEPT, "application/vnd.github+json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            FetchError::Deadline
        } else {
            FetchError::Other(e.to_string())
        }
    })?;
    match response.status().as_u16() {
        200..=299 => {}
        404 => return Err(FetchError::NotFound),
        s => return Err(FetchError::Other(format!("GitHub answered {s}"))),
    }
    // The compressed download is bounded too (a gzip bomb is caught while unpacking).
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            FetchError::Deadline
        } else {
            FetchError::Other(e.to_string())
        }
    })? {
        if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > cap {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    tokio::task::spawn_blocking(move || unpack_tarball(&body, cap))
        .await
        .map_err(|e| FetchError::Other(e.to_string()))?
        .map_err(|e| match e {
            ArchiveError::TooLarge => FetchError::TooLarge,
            ArchiveError::Unsafe(_) => FetchError::Unsafe(e),
            ArchiveError::Corrupt(c) => FetchError::Other(c),
        })
}
