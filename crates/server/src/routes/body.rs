//! Request parsing helpers: path ids and JSON bodies with the route's own error message.

use axum::body::Bytes;
use molecule_domain::WorkspaceId;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// A workspace id from the path; 400 `invalid workspace ID` otherwise.
pub(crate) fn workspace_id(raw: &str) -> ApiResult<WorkspaceId> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("invalid workspace ID"))
}

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
