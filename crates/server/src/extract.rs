//! Request extractors with the API's error answers.
//!
//! [`JsonBody`] replaces axum's `Json` for request bodies:
//!
//! ```ignore
//! async fn create(State(state): State<AppState>, JsonBody(body): JsonBody<CreateWorkspace>)
//!     -> ApiResult<Response> { … }
//! ```

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The message of every body that is not the expected JSON.
pub const INVALID_BODY: &str = "invalid request body";
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
