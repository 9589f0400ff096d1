//! The answer of the proxy: a status, a JSON body and maybe a `Retry-After`, ready for any
//! HTTP framework to send.

use serde_json::{Value, json};
use uuid::Uuid;

/// Seconds a caller should wait before retrying a busy target.
pub const BUSY_RETRY_AFTER: u32 = 30;
/// Seconds a caller should wait for a restarting or waking target.
pub const RESTART_RETRY_AFTER: u32 = 15;

/// What the proxy answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Body,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u32>,
}

/// A reply body: the platform's own JSON, or the agent's bytes passed through verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// JSON written by the platform.
    Json(Value),
    /// The agent's answer, as it sent it.
    Agent(Vec<u8>),
}

impl Body {
    /// The body as JSON (an agent body that is not JSON becomes `null`).
    pub fn to_json(&self) -> Value {
        match self {
            Body::Json(v) => v.clone(),
            Body::Agent(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        }
    }

    /// The body as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
            Body::Agent(bytes) => bytes.clone(),
        }
    }
}

impl Reply {
    /// A platform JSON reply.
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Body::Json(body),
            retry_after: None,
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, json!({ "error": message }))
    }

    /// The agent's answer, passed through.
    pub fn agent(status: u16, body: Vec<u8>) -> Self {
        Reply {
            status,
            body: Body::Agent(body),
            retry_after: None,
        }
    }

    fn retry(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 202: the target is busy and the message waits in its queue.
    pub fn queued(queue_id: Uuid, depth: i64) -> Self {
        Self::json(
            202,
            json!({
                "queued": true,
                "queue_id": queue_id,
                "queue_depth": depth,
                "message": "workspace agent busy — request queued, will dispatch when capacity available",
            }),
        )
    }

    /// 503: busy, and the message could not be queued.
    pub fn busy() -> Self {
        Self::json(
            503,
            json!({
                "error": "workspace agent busy — retry after a short backoff",
                "busy": true,
                "retry_after": BUSY_RETRY_AFTER,
            }),
        )
        .retry(BUSY_RETRY_AFTER)
    }

    /// 503: busy, and the target's own adapter (a native session) retries; nothing is queued.
    pub fn native_session_busy() -> Self {
        Self::json(
            503,
            json!({
                "error": "workspace agent busy — adapter handles retry (native_session)",
                "busy": true,
                "retry_after": BUSY_RETRY_AFTER,
                "native_session": true,
            }),
        )
        .retry(BUSY_RETRY_AFTER)
    }

    /// 503: the target's compute is gone and a restart was requested.
    pub fn restarting() -> Self {
        Self::json(
            503,
            json!({
                "error": "workspace agent unreachable — container restart triggered",
                "restarting": true,
                "retry_after": RESTART_RETRY_AFTER,
            }),
        )
        .retry(RESTART_RETRY_AFTER)
    }

    /// 503: the target hibernates and is being woken.
    pub fn waking() -> Self {
        Self::json(
            503,
            json!({
                "error": "workspace is waking from hibernation — retry in ~15 seconds",
                "waking": true,
                "retry_after": RESTART_RETRY_AFTER,
            }),
        )
        .retry(RESTART_RETRY_AFTER)
    }

    /// 200: a poll-mode target will fetch the message from its activity feed.
    pub fn poll_queued(method: &str) -> Self {
        Self::json(
            200,
            json!({ "status": "queued", "delivery_mode": "poll", "method": method }),
        )
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether this is the platform's "queued for a busy target" answer.
    pub fn is_queued(&self) -> bool {
        self.status == 202
            && matches!(&self.body, Body::Json(v) if v.get("queued") == Some(&Value::Bool(true)))
    }

    /// The `error` string of a JSON body, if any.
    pub fn error_message(&self) -> Option<String> {
        self.body
            .to_json()
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}
