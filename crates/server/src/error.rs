//! The API's error responses: `{"error": "<message>"}` with a status code. Internal error text
//! (database, backend, I/O) is logged here and never put in a body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use molecule_domain::MemoryError;
use molecule_domain::validation::FieldError;
use serde_json::{Map, Value, json};

use crate::lifecycle::LifecycleError;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Map<String, Value>,
}

impl ApiError {
    /// An error with a client-safe message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".to_owned(), Value::String(message.into()));
        Self { status, body }
    }

    /// 400 with this message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 with this message.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403 with this message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 with this message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409 with this message.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// A 500 whose cause is logged; the body carries only `message`.
    pub fn internal(message: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{message}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.body.insert(key.to_owned(), value.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Value::Object(self.body))).into_response()
    }
}

/// A lifecycle refusal as the spec's status and message.
impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound => Self::not_found("workspace not found"),
            LifecycleError::ParentPaused(_) => Self::conflict(e.to_string()),
            LifecycleError::NoBackend => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "provisioner not available")
            }
            LifecycleError::WrongState(message) => Self::not_found(message),
            LifecycleError::Conflict(message) => Self::conflict(message),
            LifecycleError::BackendFailed(message) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
            }
            LifecycleError::ActiveTasks(n) => Self::conflict(e.to_string()).with("active_tasks", n),
            LifecycleError::Store(inner) => Self::internal("lookup failed", &inner),
        }
    }
}

/// A field that breaks a validation rule: 400 with the rule's message.
impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::bad_request(e.to_string())
    }
}

/// A memory rule as the API's status: GLOBAL from a child is 403, oversize content 413,
/// anything else 400.
impl From<MemoryError> for ApiError {
    fn from(e: MemoryError) -> Self {
        let status = match e {
            MemoryError::GlobalNotRoot => StatusCode::FORBIDDEN,
            MemoryError::ContentTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            MemoryError::Scope | MemoryError::EmptyContent | MemoryError::NamespaceTooLong => {
                StatusCode::BAD_REQUEST
            }
        };
        Self::new(status, e.to_string())
    }
}

/// Turns any error into a logged 500 whose body carries only a fixed message:
/// `store.get(id).await.or_internal("query failed")?`.
pub trait OrInternal<T> {
    /// A 500 `{"error": message}`; the error itself is logged, never answered.
    fn or_internal(self, message: &str) -> ApiResult<T>;
}

impl<T, E: std::fmt::Display> OrInternal<T> for Result<T, E> {
    fn or_internal(self, message: &str) -> ApiResult<T> {
        self.map_err(|e| ApiError::internal(message, &e))
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// Shorthand for a JSON success body.
pub fn ok_json(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// 200 with a JSON array: each of `rows` through its `view`.
pub fn ok_list<T>(rows: &[T], view: impl Fn(&T) -> Value) -> Response {
    ok_json(
        StatusCode::OK,
        Value::Array(rows.iter().map(view).collect()),
    )
}

/// The body of a plain `{"status": "..."}` answer.
pub fn status_body(status: &str) -> Value {
    json!({ "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_keep_their_cause_out_of_the_body() {
        let e = ApiError::internal("query failed", &"connection reset by peer at 10.0.0.3");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&Value::Object(e.body)).unwrap();
        assert_eq!(body, r#"{"error":"query failed"}"#);
    }
}
