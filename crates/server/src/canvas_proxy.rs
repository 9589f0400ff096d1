//! The canvas reverse proxy (spec: auth-router §1.6): with `CANVAS_PROXY_URL` set, a request
//! no route matches goes to the canvas (the web UI), so UI and API share one origin.
//!
//! Method, path, query, headers and body are forwarded with `Host` rewritten to the upstream's
//! and `Authorization` and `Cookie` removed (the canvas never sees a credential); the peer is
//! appended to `X-Forwarded-For`. Both bodies stream (the request's as it arrives, the
//! answer's chunk by chunk, so server-sent events and streamed pages pass). A WebSocket
//! upgrade is forwarded and, once the upstream answers 101, the two connections are joined.
//! An unreachable upstream is a 502 `canvas unavailable`. Redirects are passed to the client,
//! not followed.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use hyper_util::rt::TokioIo;

/// Why `CANVAS_PROXY_URL` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CanvasProxyError {
    /// Not a URL, not http(s), or without a host.
    #[error("CANVAS_PROXY_URL must be an http:// or https:// URL with a host")]
    BadUrl,
    /// The HTTP client could not be built.
    #[error("cannot build the canvas proxy's HTTP client")]
    Client,
}

/// The proxy: the upstream and one HTTP client (no redirects followed, no timeouts).
#[derive(Debug, Clone)]
pub struct CanvasProxy {
    upstream: url::Url,
    client: reqwest::Client,
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl CanvasProxy {
    /// A proxy to `upstream` (`CANVAS_PROXY_URL`).
    pub fn new(upstream: &str) -> Result<Self, CanvasProxyError> {
        let upstream = url::Url::parse(upstream.trim()).map_err(|_| CanvasProxyError::BadUrl)?;
        if !matches!(upstream.scheme(), "http" | "https")
            || upstream.host_str().is_none_or(str::is_empty)
        {
            return Err(CanvasProxyError::BadUrl);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| CanvasProxyError::Client)?;
        Ok(Self { upstream, client })
    }

    /// The upstream URL for a request's path and query: the upstream's own path, then the
    /// request's.
    fn target(&self, path: &str, query: Option<&str>) -> url::Url {
        let mut url = self.upstream.clone();
        let joined = format!("{}{}", self.upstream.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url.set_query(query);
        url
    }

    /// Forwards `request` to the canvas and answers what it answers.
    pub async fn forward(&self, mut request: Request) -> Response {
        let upgrade = wants_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let (parts, body) = request.into_parts();
        let url = self.target(parts.uri.path(), parts.uri.query());
        let mut headers = forwarded_headers(&parts.headers, upgrade);
        headers.remove(header::AUTHORIZATION);
        headers.remove(header::COOKIE);
        headers.remove(header::HOST);
        if let Some(ip) = peer {
            append_forwarded_for(&mut headers, ip);
        }
        let body = if upgrade {
            reqwest::Body::from(Vec::new())
        } else {
            reqwest::Body::wrap_stream(body.into_data_stream())
        };
        let answer = self
            .client
            .request(parts.method, url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %e, "canvas proxy: the canvas did not answer");
                return (StatusCode::BAD_GATEWAY, "canvas unavailable").into_response();
            }
        };
        let status = answer.status();
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        let mut response_headers = forwarded_headers(answer.headers(), switching);
        if switching && let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                let (Ok(upstream), Ok(client)) = (answer.upgrade().await, client_upgrade.await)
                else {
                    tracing::warn!("canvas proxy: a WebSocket upgrade did not complete");
                    return;
                };
                let mut upstream = upstream;
                let mut client = TokioIo::new(client);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            std::mem::swap(response.headers_mut(), &mut response_headers);
            return response;
        }
        let mut response = Response::new(Body::from_stream(
            answer.bytes_stream().map_err(std::io::Error::other),
        ));
        *response.status_mut() = status;
        std::mem::swap(response.headers_mut(), &mut response_headers);
        response
    }
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_tokens(headers).any(|t| t == "upgrade")
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
}

/// `headers` without the hop-by-hop ones (and those `Connection` names); with `upgrade`, the
/// `Connection: upgrade` and `Upgrade` pair is kept.
fn forwarded_headers(headers: &HeaderMap, upgrade: bool) -> HeaderMap {
    let named: Vec<String> = connection_tokens(headers).collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if HOP_BY_HOP.contains(&name.as_str()) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if upgrade && let Some(protocol) = headers.get(header::UPGRADE) {
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, protocol.clone());
    }
    out
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: std::net::IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers() {
        assert!(CanvasProxy::new("ftp://x").is_err());
        assert!(CanvasProxy::new("not a url").is_err());
        let proxy = CanvasProxy::new("http://canvas:3000/ui/").unwrap();
        assert_eq!(
            proxy.target("/a/b", Some("x=1")).as_str(),
            "http://canvas:3000/ui/a/b?x=1"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("x-keep", HeaderValue::from_static("1"));
        let out = forwarded_headers(&headers, false);
        assert!(out.contains_key("x-keep") && !out.contains_key("x-hop"));
        assert!(!out.contains_key(header::CONNECTION));
    }
}
