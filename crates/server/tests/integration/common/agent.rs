//! A tiny A2A agent for tests: a real HTTP server on loopback that records every JSON-RPC
//! request and answers as the test tells it (echo, a fixed status, or hold until released).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use super::WITHIN;

/// How the agent answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with a JSON-RPC result echoing the first text part.
    Echo,
    /// This status and body.
    Status(u16, Value),
    /// Wait until [`TestAgent::release`], then echo.
    Hold,
    /// A `text/event-stream` of these `data:` events: the first at once, each further one
    /// only after a [`TestAgent::release`].
    Stream(Vec<Value>),
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Value>>>,
    answer: Arc<Mutex<Answer>>,
    changed: Arc<Notify>,
    gate: Arc<Semaphore>,
}

/// A running test agent.
pub struct TestAgent {
    /// Its A2A URL.
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestAgent {
    /// An echoing agent on a free loopback port.
    pub async fn start() -> TestAgent {
        let shared = Shared {
            received: Arc::default(),
            answer: Arc::new(Mutex::new(Answer::Echo)),
            changed: Arc::new(Notify::new()),
            gate: Arc::new(Semaphore::new(0)),
        };
        let app = Router::new()
            .route("/", post(handle))
            .route("/transcript", axum::routing::get(transcript))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestAgent { url, shared, task }
    }

    /// Sets how the agent answers from now on.
    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    /// Lets `n` held requests go.
    pub fn release(&self, n: usize) {
        self.shared.gate.add_permits(n);
    }

    /// Every request body received so far.
    pub fn received(&self) -> Vec<Value> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many requests carried this `messageId`.
    pub fn deliveries_of(&self, message_id: &str) -> usize {
        self.received()
            .iter()
            .filter(|r| r.pointer("/params/message/messageId") == Some(&json!(message_id)))
            .count()
    }

    /// Waits (bounded by [`WITHIN`]) until `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let notified = self.shared.changed.notified();
            if self.shared.received.lock().unwrap().len() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "the agent got {} requests, expected {n}",
                    self.received().len()
                );
            }
        }
    }
}

async fn handle(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.received.lock().unwrap().push(request.clone());
    shared.changed.notify_waiters();
    let answer = shared.answer.lock().unwrap().clone();
    match answer {
        Answer::Echo => echo(&request),
        Answer::Status(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
        Answer::Hold => {
            shared.gate.acquire().await.unwrap().forget();
            echo(&request)
        }
        Answer::Stream(events) => {
            let gate = shared.gate.clone();
            let body = futures_util::stream::unfold((events, 0usize), move |(events, n)| {
                let gate = gate.clone();
                async move {
                    let event = events.get(n)?.clone();
                    if n > 0 {
                        gate.acquire().await.unwrap().forget();
                    }
                    let chunk = format!("data: {event}\n\n");
                    Some((Ok::<_, std::io::Error>(chunk), (events, n + 1)))
                }
            });
            (
                [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        }
    }
}

fn echo(request: &Value) -> Response {
    let text = request
        .pointer("/params/message/parts/0/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    axum::Json(json!({
        "jsonrpc": "2.0",
        "id": request.get("id").cloned().unwrap_or(Value::Null),
        "result": {
            "kind": "message",
            "role": "agent",
            "messageId": uuid::Uuid::new_v4().to_string(),
            "parts": [{ "kind": "text", "text": format!("echo: {text}") }],
        },
    }))
    .into_response()
}

/// `GET /transcript`: what the agent was asked (query and `Authorization`), in the runtime's
/// transcript shape.
async fn transcript(
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    axum::Json(json!({
        "runtime": "test",
        "supported": true,
        "lines": [{"type": "user", "content": "hello"}],
        "cursor": 1,
        "more": false,
        "query": query,
        "authorization": auth,
    }))
    .into_response()
}
