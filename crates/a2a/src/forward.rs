//! Streamed requests to a workspace's agent besides A2A (chat uploads and downloads), under
//! the same address policy and vetted client as A2A delivery: the URL is checked, the client
//! connects only to checked addresses and follows no redirects. Neither body is buffered.

use std::time::Duration;

use molecule_store::Workspace;

use crate::fetch::{FetchError, checked_url};
use crate::shared::Shared;

/// How long a forwarded exchange may take in full (request and answer bodies included).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// One request to forward to an agent.
#[derive(Debug)]
pub struct AgentRequest<'a> {
    /// The method.
    pub method: reqwest::Method,
    /// The path on the agent (`/internal/…`).
    pub path: &'a str,
    /// Query parameters (escaped when sent).
    pub query: &'a [(&'a str, String)],
    /// Headers to send (`Authorization`, `Content-Type`, …).
    pub headers: reqwest::header::HeaderMap,
    /// The body, if any (streamed).
    pub body: Option<reqwest::Body>,
}

/// Sends `request` to the agent of `ws`; the answer's body is left to the caller to stream
/// (within [`FORWARD_TIMEOUT`] of the start). A refused URL is [`FetchError::NotAllowed`], a
/// failed send (no connection, a request body that failed) [`FetchError::Unreachable`].
pub(crate) async fn to_agent(
    shared: &Shared,
    ws: &Workspace,
    request: AgentRequest<'_>,
) -> Result<reqwest::Response, FetchError> {
    let (url, client) = checked_url(shared, ws, request.path, request.query).await?;
    let mut builder = client
        .request(request.method, url.as_str())
        .headers(request.headers)
        .timeout(FORWARD_TIMEOUT);
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    builder.send().await.map_err(|e| {
        if e.is_timeout() {
            FetchError::Timeout
        } else {
            FetchError::Unreachable
        }
    })
}
