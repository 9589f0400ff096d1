//! JSON bodies parsed with the route's own error message, for the few routes whose message is
//! not [`JsonBody`](crate::extract::JsonBody)'s `invalid request body`.

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// A JSON body; 400 with `message` if it is not valid JSON of the expected shape.
pub(crate) fn json<T: DeserializeOwned>(body: &Bytes, message: &str) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request(message))
}

/// A JSON object body (or an empty body as an empty object); 400 with `message` otherwise.
pub(crate) fn object(
    body: &Bytes,
    message: &str,
) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    json(body, message)
}
