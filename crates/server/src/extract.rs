//! Request extractors with the API's error answers, so that a handler's signature says what it
//! reads and a malformed request never reaches it:
//!
//! ```ignore
//! async fn set(
//!     State(state): State<AppState>,
//!     WorkspacePath(id): WorkspacePath,     // `{id}`: 400 `invalid workspace ID`
//!     Query(q): Query<ListQuery>,           // 400 `invalid query parameters`
//!     JsonBody(body): JsonBody<SetSecret>,  // 400 `invalid request body` / 413
//! ) -> ApiResult<Response> { … }
//! ```

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use molecule_domain::WorkspaceId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// The message of every body that is not the expected JSON.
pub const INVALID_BODY: &str = "invalid request body";
/// The message of a workspace id in the path that is not a UUID.
pub const INVALID_WORKSPACE_ID: &str = "invalid workspace ID";
/// The message of a query string that does not fit the route's parameters.
pub const INVALID_QUERY: &str = "invalid query parameters";
/// The message of a body over the route's size limit.
pub const BODY_TOO_LARGE: &str = "request body too large";

/// A JSON request body. Any body that is not valid JSON of type `T` (syntax error, wrong field
/// type, missing required field, empty body) is refused with 400
/// `{"error":"invalid request body"}`; a body over the limit (`DefaultBodyLimit`, 1 MiB unless
/// the route sets another) with 413. The `Content-Type` is not checked, as in the reference.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE)
                } else {
                    tracing::debug!(error = %rejection.body_text(), "unreadable request body");
                    ApiError::bad_request(INVALID_BODY)
                }
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            // The error's text may quote a value of the body (a secret): log only its kind.
            tracing::debug!(
                kind = ?e.classify(),
                line = e.line(),
                column = e.column(),
                "request body is not the expected JSON"
            );
            ApiError::bad_request(INVALID_BODY)
        })
    }
}

/// The workspace id of the path (`{id}` or `{workspace_id}`); 400 `invalid workspace ID` when
/// it is not a UUID.
#[derive(Debug, Clone, Copy)]
pub struct WorkspacePath(pub WorkspaceId);

impl<S: Send + Sync> FromRequestParts<S> for WorkspacePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::bad_request(INVALID_WORKSPACE_ID);
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        params
            .iter()
            .find(|(name, _)| matches!(*name, "id" | "workspace_id"))
            .and_then(|(_, value)| value.parse().ok())
            .map(Self)
            .ok_or_else(invalid)
    }
}

/// A query string as `T` (a struct of optional fields, see [`flag`]); 400
/// `{"error":"invalid query parameters"}` when it does not fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|_| ApiError::bad_request(INVALID_QUERY))
    }
}

/// An optional query parameter, `None` when absent or empty. Use with
/// `#[serde(default, deserialize_with = "non_empty")]`.
pub fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Some(String::deserialize(deserializer)?).filter(|v| !v.is_empty()))
}

/// A query flag as the reference reads it: `true` is on, any other value (or none) is off.
/// Use with `#[serde(default, deserialize_with = "flag")]`.
pub fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(String::deserialize(deserializer)? == "true")
}
