//! Plain GETs from a workspace's agent besides A2A (the transcript),
//! under the same address policy and vetted client as A2A delivery: the URL is checked, the
//! client connects only to checked addresses and follows no redirects.

use std::time::Duration;

use molecule_store::Workspace;

use crate::shared::Shared;

/// The largest agent answer read, in bytes.
pub const MAX_FETCH_BYTES: usize = 1024 * 1024;
/// How long an agent may take to answer in full.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(10);

/// Why a fetch got no answer. Each has a fixed message for the caller (no upstream text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The workspace has no URL on file.
    #[error("workspace not registered (no URL on file)")]
    NoUrl,
    /// The URL is not one the platform may connect to.
    #[error("workspace URL not allowed")]
    NotAllowed,
    /// Nothing answered.
    #[error("workspace unreachable")]
    Unreachable,
    /// The agent took too long.
    #[error("workspace did not answer in time")]
    Timeout,
    /// The answer could not be read whole (or was over the size limit).
    #[error("failed to read workspace response")]
    BadAnswer,
}

/// An agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// HTTP status.
    pub status: u16,
    /// Its content type, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// `<agent URL with path>?query` (`query` escaped), once the A2A address policy allows it,
/// and the client to send it with.
pub(crate) async fn checked_url<'s>(
    shared: &'s Shared,
    ws: &Workspace,
    path: &str,
    query: &[(&str, String)],
) -> Result<(url::Url, &'s reqwest::Client), FetchError> {
    let base = ws
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or(FetchError::NoUrl)?;
    let (base, policy) = shared.settings.target(ws, &base);
    let mut url = url::Url::parse(&base).map_err(|_| FetchError::NotAllowed)?;
    url.set_path(path);
    url.set_query(None);
    for (k, v) in query {
        url.query_pairs_mut().append_pair(k, v);
    }
    policy
        .check(url.as_str())
        .await
        .map_err(|_| FetchError::NotAllowed)?;
    Ok((url, shared.client_for(&policy)))
}

/// `GET <agent URL with path>?query` with the caller's `Authorization` forwarded when given.
pub(crate) async fn from_agent(
    shared: &Shared,
    ws: &Workspace,
    path: &str,
    query: &[(&str, String)],
    authorization: Option<&str>,
) -> Result<Fetched, FetchError> {
    let (url, client) = checked_url(shared, ws, path, query).await?;
    let mut request = client.get(url.as_str());
    if let Some(auth) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, auth);
    }
    let exchange = async {
        let mut response = request.send().await.map_err(|_| FetchError::Unreachable)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| FetchError::BadAnswer)? {
            if body.len().saturating_add(chunk.len()) > MAX_FETCH_BYTES {
                return Err(FetchError::BadAnswer);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            content_type,
            body,
        })
    };
    tokio::time::timeout(FETCH_DEADLINE, exchange)
        .await
        .map_err(|_| FetchError::Timeout)?
}
