//! The answer of the proxy: a status, a JSON body and maybe a `Retry-After`, ready for any
//! HTTP framework to send.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::dispatch::Chunk;

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
    /// The agent's event stream, relayed as it arrives.
    Stream(Stream),
}

/// An agent's event stream on its way to the caller: its content type and the chunks the
/// relay forwards. Whoever sends the reply takes the chunks once.
#[derive(Clone)]
pub struct Stream {
    /// The agent's content type (`text/event-stream…`).
    pub content_type: String,
    chunks: Arc<Mutex<Option<mpsc::Receiver<Chunk>>>>,
}

impl Stream {
    /// A stream of `content_type` whose chunks arrive on `chunks`.
    pub fn new(content_type: String, chunks: mpsc::Receiver<Chunk>) -> Self {
        Stream {
            content_type,
            chunks: Arc::new(Mutex::new(Some(chunks))),
        }
    }

    /// The chunks, the first time only.
    pub fn take(&self) -> Option<mpsc::Receiver<Chunk>> {
        self.chunks.lock().take()
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Stream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chunks, &other.chunks)
    }
}

impl Body {
    /// The body as JSON (an agent body that is not JSON becomes `null`).
    pub fn to_json(&self) -> Value {
        match self {
            Body::Json(v) => v.clone(),
            Body::Agent(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
            Body::Stream(_) => Value::Null,
        }
    }

    /// The body as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
            Body::Agent(bytes) => bytes.clone(),
            Body::Stream(_) => Vec::new(),
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

    /// The agent's event stream, relayed.
    pub fn stream(status: u16, stream: Stream) -> Self {
        Reply {
            status,
            body: Body::Stream(stream),
            retry_after: None,
        }
    }

    fn retry(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 202: the target is busy and the message waits in its queue. Besides the platform's
    /// fields (the canvas reads them) it is a JSON-RPC 2.0 answer to `request` whose result is
    /// an A2A Task in state `submitted`, id = the queue id (`GET …/a2a/queue/:queue_id`).
    pub fn queued(queue_id: Uuid, depth: i64, request: &Value) -> Self {
        let fields = json!({
            "queued": true,
            "queue_id": queue_id,
            "queue_depth": depth,
            "message": "workspace agent busy — request queued, will dispatch when capacity available",
        });
        Self::json(202, submitted(fields, request, &queue_id.to_string()))
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

    /// 200: a poll-mode target will fetch the message from its activity feed. Besides the
    /// platform's fields it is a JSON-RPC 2.0 answer to `request` whose result is an A2A Task
    /// in state `submitted`.
    pub fn poll_queued(method: &str, request: &Value) -> Self {
        let fields = json!({ "status": "queued", "delivery_mode": "poll", "method": method });
        Self::json(200, submitted(fields, request, &Uuid::new_v4().to_string()))
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

/// `fields` plus the JSON-RPC 2.0 envelope answering `request` with an A2A Task `task_id` in
/// state `submitted`: the A2A 0.3 shape (`kind: "task"`, lowercase state) for `message/*`
/// methods, the A2A 1.0 shape (`{"task": …}`, `TASK_STATE_SUBMITTED`) for the 1.0 method names.
fn submitted(mut fields: Value, request: &Value, task_id: &str) -> Value {
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let message = request.get("params").and_then(|p| p.get("message"));
    let context_id = message
        .and_then(|m| m.get("contextId").or_else(|| m.get("context_id")))
        .and_then(Value::as_str)
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let result = if is_v1_method(method) {
        json!({ "task": {
            "id": task_id,
            "contextId": context_id,
            "status": { "state": "TASK_STATE_SUBMITTED", "timestamp": timestamp },
        }})
    } else {
        json!({
            "kind": "task",
            "id": task_id,
            "contextId": context_id,
            "status": { "state": "submitted", "timestamp": timestamp },
        })
    };
    if let Value::Object(map) = &mut fields {
        map.insert("jsonrpc".into(), json!("2.0"));
        map.insert(
            "id".into(),
            request.get("id").cloned().unwrap_or(Value::Null),
        );
        map.insert("result".into(), result);
    }
    fields
}

/// Whether `method` is an A2A 1.0 JSON-RPC method name (`SendMessage`, …) rather than a 0.3
/// one (`message/send`, …).
pub fn is_v1_method(method: &str) -> bool {
    method
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase())
}
