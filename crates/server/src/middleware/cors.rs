//! CORS (spec: auth-router §1.2): an allow-list of origins; any other cross-origin request is
//! refused with 403 and an empty body.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use std::sync::Arc;

use super::HttpSettings;

const ALLOW_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,OPTIONS";
const ALLOW_HEADERS: &str = "Origin,Content-Type,X-Workspace-ID,Authorization";
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The configured origins: `CORS_ORIGINS` split on `,`, each trimmed and lower-cased, empty
/// entries dropped.
pub fn parse_origins(text: &str) -> Vec<String> {
    text.split(',')
        .map(|o| o.trim().to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect()
}

/// The CORS layer. The request `Origin` is compared verbatim with the configured (lower-case)
/// origins; an `Origin` of `http://<Host>` or `https://<Host>` is same-origin, not CORS.
pub async fn cors(State(http): State<Arc<HttpSettings>>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    if is_same_host(request.headers(), &origin) {
        return next.run(request).await;
    }
    let allowed = origin
        .to_str()
        .is_ok_and(|o| http.cors_origins.iter().any(|a| a == o));
    if !allowed {
        return status_only(StatusCode::FORBIDDEN);
    }
    if request.method() == Method::OPTIONS {
        let mut response = status_only(StatusCode::NO_CONTENT);
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static(PREFLIGHT_VARY));
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        return response;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

fn is_same_host(headers: &HeaderMap, origin: &HeaderValue) -> bool {
    let (Some(host), Ok(origin)) = (
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
        origin.to_str(),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest == host)
}

fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_trimmed_lowercased_and_split() {
        assert_eq!(
            parse_origins(" http://A.example ,,https://b.example:8443,"),
            vec!["http://a.example", "https://b.example:8443"]
        );
    }

    #[test]
    fn same_host_origin_is_not_cors() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("api.example:8080"));
        assert!(is_same_host(
            &h,
            &HeaderValue::from_static("http://api.example:8080")
        ));
        assert!(is_same_host(
            &h,
            &HeaderValue::from_static("https://api.example:8080")
        ));
        assert!(!is_same_host(
            &h,
            &HeaderValue::from_static("http://api.example")
        ));
        assert!(!is_same_host(
            &HeaderMap::new(),
            &HeaderValue::from_static("http://x")
        ));
    }
}
