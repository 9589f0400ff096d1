//! Local stand-ins for the chat platforms' APIs, one axum server answering the real request
//! and answer shapes: Telegram's Bot API (`/telegram/bot<token>/<method>`, `getUpdates` as a
//! real long poll), Slack's `chat.postMessage` and incoming webhooks, Discord webhooks and
//! Lark bot webhooks. Every call is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::WITHIN;

/// A bot token the fake Telegram accepts.
pub const BOT_TOKEN: &str = "123456789:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij";
/// A bot token the fake Telegram answers 401 to.
pub const REVOKED_TOKEN: &str = "987654321:revokedREVOKEDrevokedREVOKEDrevoked";

/// One recorded call: the platform (`telegram`, `slack`, `slack-hook`, `discord`, `lark`),
/// the method or path, the `Authorization` header and the JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    pub platform: String,
    pub method: String,
    pub auth: String,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    changed: Notify,
    updates: Mutex<VecDeque<Value>>,
    next_update: Mutex<i64>,
    update_added: Notify,
}

/// The fake platforms.
pub struct FakeChats {
    pub base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeChats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeChats {
    pub async fn start() -> FakeChats {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/telegram/{bot}/{method}", post(telegram))
            .route("/slack/api/{method}", post(slack_api))
            .route("/slack/hooks/{*rest}", post(slack_hook))
            .route("/discord/api/webhooks/{*rest}", post(discord))
            .route("/lark/open-apis/bot/v2/hook/{*rest}", post(lark))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeChats { base, shared, task }
    }

    /// Queues a Telegram update (its `update_id` is set) for the next `getUpdates`.
    pub fn push_update(&self, mut update: Value) {
        let mut next = self.shared.next_update.lock().unwrap();
        *next += 1;
        update["update_id"] = json!(*next);
        self.shared.updates.lock().unwrap().push_back(update);
        self.shared.update_added.notify_waiters();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn calls_of(&self, platform: &str, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.platform == platform && c.method == method)
            .collect()
    }

    /// Waits (bounded) until a call of `platform`/`method` satisfies `pred`; answers it.
    pub async fn wait_call(
        &self,
        platform: &str,
        method: &str,
        pred: impl Fn(&Call) -> bool,
    ) -> Call {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(c) = self
                .calls_of(platform, method)
                .into_iter()
                .find(|c| pred(c))
            {
                return c;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no {platform} {method} call arrived; calls: {:?}",
                    self.calls()
                );
            }
        }
    }
}

fn record(shared: &Shared, platform: &str, method: &str, headers: &HeaderMap, body: Value) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    shared.calls.lock().unwrap().push(Call {
        platform: platform.into(),
        method: method.into(),
        auth,
        body,
    });
    shared.changed.notify_waiters();
}

fn json_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

async fn telegram(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body = json_body(&body);
    record(&shared, "telegram", &method, &headers, body.clone());
    let token = bot.strip_prefix("bot").unwrap_or("");
    if token != BOT_TOKEN {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        )
            .into_response();
    }
    let ok = |result: Value| axum::Json(json!({"ok": true, "result": result})).into_response();
    match method.as_str() {
        "getMe" => ok(json!({
            "id": 123456789, "is_bot": true, "first_name": "Test", "username": "test_bot",
            "can_read_all_group_messages": false,
        })),
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let added = shared.update_added.notified();
                let ready: Vec<Value> = {
                    let mut updates = shared.updates.lock().unwrap();
                    updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    updates.iter().cloned().collect()
                };
                if !ready.is_empty() {
                    return ok(Value::Array(ready));
                }
                if tokio::time::timeout_at(deadline, added).await.is_err() {
                    return ok(json!([]));
                }
            }
        }
        "sendMessage" => ok(json!({"message_id": 1, "chat": {"id": body["chat_id"]}})),
        _ => ok(json!(true)),
    }
}

async fn slack_api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    record(&shared, "slack", &method, &headers, json_body(&body));
    let authorised = headers
        .get("authorization")
        .is_some_and(|v| v == "Bearer xoxb-test-token");
    if !authorised {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    axum::Json(json!({"ok": true, "channel": "C1", "ts": "1.1"})).into_response()
}

async fn slack_hook(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    record(&shared, "slack-hook", &rest, &headers, json_body(&body));
    "ok".into_response()
}

async fn discord(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    record(&shared, "discord", &rest, &headers, json_body(&body));
    StatusCode::NO_CONTENT.into_response()
}

async fn lark(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    record(&shared, "lark", &rest, &headers, json_body(&body));
    axum::Json(json!({"code": 0, "msg": "success", "data": {}})).into_response()
}
