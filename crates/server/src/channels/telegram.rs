//! Telegram (spec §6.6): the Bot API at `<endpoint>/bot<token>/<method>`, long polling with
//! `getUpdates`, webhooks authenticated by the `X-Telegram-Bot-Api-Secret-Token` header
//! (the channel's `webhook_secret`; a channel without one accepts no webhook), and discovery
//! of the chats a bot is in.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::adapter::{
    Adapter, AdapterError, CALL_TIMEOUT, Config, Ctx, Endpoints, Field, InboundMessage, Parsed,
    PollSink, WebhookRequest, chat_ids, check_fields, chunks, same_secret, text,
};

/// The Telegram adapter.
#[derive(Debug, Clone, Copy)]
pub struct Telegram;

const SCHEMA: &[Field] = &[
    Field {
        key: "bot_token",
        label: "Bot Token",
        kind: "password",
        required: true,
        sensitive: true,
        placeholder: Some("123456789:ABCdefGHIjklMNOpqrsTUVwxyz"),
        help: Some("From @BotFather"),
    },
    Field {
        key: "chat_id",
        label: "Chat IDs",
        kind: "text",
        required: true,
        sensitive: false,
        placeholder: Some("-1001234567890"),
        help: Some("Comma-separated; use Detect Chats to find them"),
    },
    Field {
        key: "webhook_secret",
        label: "Webhook Secret",
        kind: "password",
        required: false,
        sensitive: true,
        placeholder: None,
        help: Some("Only for webhook mode: the secret_token given to setWebhook"),
    },
];

/// The most characters of one message.
const MAX_MESSAGE: usize = 4096;
/// The longest wait a 429 may ask for before one resend.
const MAX_RETRY_AFTER: u64 = 30;
/// The header Telegram sends the webhook's secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// A Bot API answer that is not `ok`.
struct ApiFailure {
    code: i64,
    description: String,
    retry_after: Option<u64>,
}

/// Whether `token` looks like a bot token (`^\d+:[A-Za-z0-9_-]{30,}$`).
pub fn token_format_ok(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() >= 30
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Calls a Bot API method; `Ok(result)` or the failure. Transport errors never carry the
/// URL (it holds the token).
async fn call(
    ctx: &Ctx,
    token: &str,
    method: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Result<Value, ApiFailure>, AdapterError> {
    let url = format!("{}/bot{token}/{method}", ctx.endpoints.telegram);
    let resp = ctx
        .http
        .post(url)
        .json(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|_| AdapterError::Transport("telegram"))?;
    let status = resp.status().as_u16();
    let answer: Value = resp
        .json()
        .await
        .map_err(|_| AdapterError::Transport("telegram"))?;
    if answer["ok"].as_bool() == Some(true) {
        return Ok(Ok(answer["result"].clone()));
    }
    Ok(Err(ApiFailure {
        code: answer["error_code"].as_i64().unwrap_or(i64::from(status)),
        description: answer["description"].as_str().unwrap_or("").to_owned(),
        retry_after: answer["parameters"]["retry_after"].as_u64(),
    }))
}

/// Sends one chunk: Markdown first; a 429 waits and resends once; any other failure resends
/// without `parse_mode`.
async fn send_chunk(ctx: &Ctx, token: &str, chat: i64, chunk: &str) -> Result<(), AdapterError> {
    let mut body = json!({
        "chat_id": chat, "text": chunk, "parse_mode": "Markdown",
        "disable_web_page_preview": true,
    });
    let mut waited = false;
    let mut plain = false;
    loop {
        match call(ctx, token, "sendMessage", &body, CALL_TIMEOUT).await? {
            Ok(_) => return Ok(()),
            Err(f) if f.code == 401 => return Err(AdapterError::Unauthorized),
            Err(f) if f.code == 403 => {
                return Err(AdapterError::Api(format!(
                    "forbidden: bot was blocked or kicked from chat {chat}"
                )));
            }
            Err(f) if f.code == 429 && !waited => {
                waited = true;
                let secs = f.retry_after.unwrap_or(1).min(MAX_RETRY_AFTER);
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            Err(f) if !plain => {
                tracing::debug!(code = f.code, "telegram: resending without parse_mode");
                plain = true;
                if let Some(o) = body.as_object_mut() {
                    o.remove("parse_mode");
                }
            }
            Err(f) => {
                return Err(AdapterError::Api(format!(
                    "telegram: API error {}: {}",
                    f.code, f.description
                )));
            }
        }
    }
}

/// Where a chunk is cut: the last blank line, else the last newline, else the last space.
fn cut(window: &str) -> usize {
    window
        .rfind("\n\n")
        .or_else(|| window.rfind('\n'))
        .or_else(|| window.rfind(' '))
        .unwrap_or(0)
}

/// The message of an Update's `message` or `channel_post`.
fn message_of(update: &Value) -> Option<InboundMessage> {
    let m = update
        .get("message")
        .or_else(|| update.get("channel_post"))?;
    let text = m["text"].as_str()?.to_owned();
    let chat = &m["chat"];
    let chat_id = chat["id"].as_i64()?.to_string();
    let from = &m["from"];
    let (user_id, username) = if from.is_object() {
        let name = from["username"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or_else(|| from["first_name"].as_str())
            .unwrap_or("");
        (
            from["id"]
                .as_i64()
                .map(|i| i.to_string())
                .unwrap_or_default(),
            name.to_owned(),
        )
    } else {
        (
            chat_id.clone(),
            chat["title"].as_str().unwrap_or("").to_owned(),
        )
    };
    let mut metadata = Map::new();
    metadata.insert(
        "chat_type".into(),
        json!(chat["type"].as_str().unwrap_or("")),
    );
    metadata.insert(
        "first_name".into(),
        json!(from["first_name"].as_str().unwrap_or("")),
    );
    metadata.insert(
        "last_name".into(),
        json!(from["last_name"].as_str().unwrap_or("")),
    );
    Some(InboundMessage {
        chat_id,
        user_id,
        username,
        text,
        message_id: m["message_id"]
            .as_i64()
            .map(|i| i.to_string())
            .unwrap_or_default(),
        metadata,
    })
}

#[async_trait::async_trait]
impl Adapter for Telegram {
    fn channel_type(&self) -> &'static str {
        "telegram"
    }

    fn display_name(&self) -> &'static str {
        "Telegram"
    }

    fn config_schema(&self) -> &'static [Field] {
        SCHEMA
    }

    fn validate_config(&self, _: &Endpoints, config: &Config) -> Result<(), AdapterError> {
        check_fields(SCHEMA, config)?;
        if !token_format_ok(text(config, "bot_token")) {
            return Err(AdapterError::Invalid("invalid bot token format".into()));
        }
        if !config.contains_key("chat_id") {
            return Err(AdapterError::Invalid(
                "missing required field: chat_id".into(),
            ));
        }
        for chat in chat_ids(config) {
            if chat.parse::<i64>().is_err() {
                return Err(AdapterError::Invalid(format!(
                    "invalid chat_id \"{chat}\": not an integer"
                )));
            }
        }
        Ok(())
    }

    async fn send_message(
        &self,
        ctx: &Ctx,
        config: &Config,
        chat_id: &str,
        message: &str,
    ) -> Result<(), AdapterError> {
        let token = text(config, "bot_token");
        if token.is_empty() {
            return Err(AdapterError::Invalid("bot_token not configured".into()));
        }
        let chat: i64 = chat_id
            .trim()
            .parse()
            .map_err(|_| AdapterError::Invalid(format!("invalid chat_id \"{chat_id}\"")))?;
        for (i, chunk) in chunks(message, MAX_MESSAGE, cut).iter().enumerate() {
            if let Err(e) = send_chunk(ctx, token, chat, chunk).await {
                if i == 0 {
                    return Err(e);
                }
                tracing::warn!(error = %e, chunk = i, "telegram: a later chunk failed");
            }
        }
        Ok(())
    }

    async fn send_typing(&self, ctx: &Ctx, config: &Config, chat_id: &str) {
        let Ok(chat) = chat_id.parse::<i64>() else {
            return;
        };
        let body = json!({"chat_id": chat, "action": "typing"});
        let _ = call(
            ctx,
            text(config, "bot_token"),
            "sendChatAction",
            &body,
            CALL_TIMEOUT,
        )
        .await;
    }

    fn verify(&self, request: &WebhookRequest, config: &Config) -> bool {
        let secret = text(config, "webhook_secret");
        let given = request.header(SECRET_HEADER).unwrap_or("");
        !secret.is_empty() && same_secret(secret.as_bytes(), given.as_bytes())
    }

    fn parse_webhook(&self, request: &WebhookRequest, _: &Config) -> Result<Parsed, AdapterError> {
        let update: Value = serde_json::from_slice(&request.body)
            .map_err(|_| AdapterError::Parse("invalid JSON".into()))?;
        Ok(message_of(&update).map_or(Parsed::Nothing, Parsed::Message))
    }

    fn accepts_chat(&self, config: &Config, chat_id: &str) -> bool {
        chat_ids(config).iter().any(|c| c == chat_id)
    }

    fn polls(&self) -> bool {
        true
    }

    async fn poll(
        &self,
        ctx: &Ctx,
        config: &Config,
        sink: Arc<dyn PollSink>,
    ) -> Result<(), AdapterError> {
        let token = text(config, "bot_token").to_owned();
        let chats = chat_ids(config);
        let _ = call(ctx, &token, "deleteWebhook", &json!({}), CALL_TIMEOUT).await;
        let mut offset: i64 = 0;
        let wait = ctx.poll_timeout;
        loop {
            let body = json!({
                "offset": offset, "timeout": wait.as_secs(),
                "allowed_updates": ["message", "channel_post", "my_chat_member", "callback_query"],
            });
            let updates = match call(ctx, &token, "getUpdates", &body, wait + CALL_TIMEOUT).await {
                Ok(Ok(Value::Array(updates))) => updates,
                Ok(Ok(_)) => Vec::new(),
                Ok(Err(f)) if f.code == 401 => return Err(AdapterError::Unauthorized),
                Ok(Err(f)) if f.code == 429 => {
                    let secs = f.retry_after.unwrap_or(1).min(MAX_RETRY_AFTER);
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    continue;
                }
                Ok(Err(_)) | Err(_) => {
                    tokio::time::sleep(ctx.poll_retry).await;
                    continue;
                }
            };
            for update in updates {
                if let Some(id) = update["update_id"].as_i64() {
                    offset = offset.max(id.saturating_add(1));
                }
                handle_update(ctx, &token, &chats, &update, sink.as_ref()).await;
            }
        }
    }
}

/// One polled update: callback buttons, membership changes, commands, or a message.
async fn handle_update(
    ctx: &Ctx,
    token: &str,
    chats: &[String],
    update: &Value,
    sink: &dyn PollSink,
) {
    if let Some(cb) = update.get("callback_query") {
        let data = cb["data"].as_str().unwrap_or("").to_owned();
        let answer = json!({"callback_query_id": cb["id"], "text": "Received"});
        let _ = call(ctx, token, "answerCallbackQuery", &answer, CALL_TIMEOUT).await;
        let decision = if data.starts_with("reject") {
            "rejected"
        } else {
            "approved"
        };
        // A callback on an old or inline message has no `message`: nothing to edit.
        if let (Some(chat), Some(mid)) = (
            cb["message"]["chat"]["id"].as_i64(),
            cb["message"]["message_id"].as_i64(),
        ) {
            let old = cb["message"]["text"].as_str().unwrap_or("");
            let edit = json!({
                "chat_id": chat, "message_id": mid,
                "text": format!("{old}\n\n✅ CEO {decision}"),
            });
            let _ = call(ctx, token, "editMessageText", &edit, CALL_TIMEOUT).await;
            let mut metadata = Map::new();
            metadata.insert("callback_data".into(), json!(data));
            metadata.insert("decision".into(), json!(decision));
            sink.dispatch(InboundMessage {
                chat_id: chat.to_string(),
                user_id: cb["from"]["id"]
                    .as_i64()
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                username: cb["from"]["username"].as_str().unwrap_or("").to_owned(),
                text: format!("CEO_DECISION: {data}"),
                message_id: cb["id"].as_str().unwrap_or("").to_owned(),
                metadata,
            });
        }
        return;
    }
    if let Some(member) = update.get("my_chat_member") {
        let Some(chat) = member["chat"]["id"].as_i64() else {
            return;
        };
        match member["new_chat_member"]["status"].as_str() {
            Some("member" | "administrator") => {
                let hello = json!({
                    "chat_id": chat,
                    "text": format!("👋 Hello! I'm connected to Molecule AI. This chat's ID is {chat}."),
                });
                let _ = call(ctx, token, "sendMessage", &hello, CALL_TIMEOUT).await;
            }
            Some("left" | "kicked") => sink.left_chat(&chat.to_string()).await,
            _ => {}
        }
        return;
    }
    let Some(msg) = message_of(update) else {
        return;
    };
    if !chats.is_empty() && !chats.contains(&msg.chat_id) {
        return;
    }
    let command = msg
        .text
        .split_whitespace()
        .next()
        .filter(|w| w.starts_with('/'))
        .map(|w| w.split('@').next().unwrap_or(w).to_owned());
    let reply = match command.as_deref() {
        Some("/start") => Some(format!(
            "✅ Connected to Molecule AI. This chat's ID is {}. Send a message to talk to your agent.",
            msg.chat_id
        )),
        Some("/help") => Some(
            "Send any message to talk to your agent.\n/reset clears the conversation history.\n/cancel asks the agent to stop."
                .to_owned(),
        ),
        Some("/reset") => {
            sink.reset_history(&msg.chat_id).await;
            Some("🧹 Conversation history cleared.".to_owned())
        }
        Some("/cancel") => Some("⚠️ Cancellation requested (best-effort).".to_owned()),
        _ => None,
    };
    match reply {
        Some(text) => {
            if let Ok(chat) = msg.chat_id.parse::<i64>() {
                let body = json!({"chat_id": chat, "text": text});
                let _ = call(ctx, token, "sendMessage", &body, CALL_TIMEOUT).await;
            }
        }
        None => sink.dispatch(msg),
    }
}

/// Why discovery failed, as the user-facing message of the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    /// A malformed token.
    #[error("invalid bot token format")]
    Format,
    /// Telegram refused the token.
    #[error("Invalid bot token. Check the token from @BotFather and try again.")]
    Token,
    /// Another poller uses the bot.
    #[error(
        "This bot is already connected to another channel. Disconnect the existing channel first, or wait 30 seconds and retry."
    )]
    Conflict,
    /// Telegram could not be reached.
    #[error("Cannot reach Telegram API. Check your network connection and try again.")]
    Network,
    /// Anything else.
    #[error("Failed to connect to Telegram. Check your bot token and try again.")]
    Other,
}

fn discover_failure(f: &ApiFailure) -> DiscoverError {
    let d = f.description.to_lowercase();
    if f.code == 401 || f.code == 404 || d.contains("unauthorized") || d.contains("not found") {
        DiscoverError::Token
    } else if f.code == 409 || d.contains("conflict") || d.contains("terminated by other") {
        DiscoverError::Conflict
    } else {
        DiscoverError::Other
    }
}

/// `POST /channels/discover` for Telegram: the bot's name, the chats it can see (answering
/// every `/start` with the chat id), and whether privacy mode hides group messages.
pub async fn discover(ctx: &Ctx, token: &str) -> Result<Value, DiscoverError> {
    if !token_format_ok(token) {
        return Err(DiscoverError::Format);
    }
    let step = |r: Result<Result<Value, ApiFailure>, AdapterError>| match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(f)) => Err(discover_failure(&f)),
        Err(_) => Err(DiscoverError::Network),
    };
    let me = step(call(ctx, token, "getMe", &json!({}), CALL_TIMEOUT).await)?;
    let commands = json!({"commands": [
        {"command": "start", "description": "Connect this chat"},
        {"command": "help", "description": "How to talk to the agent"},
        {"command": "reset", "description": "Clear the conversation history"},
        {"command": "cancel", "description": "Ask the agent to stop"},
    ]});
    if let Ok(Err(f)) = call(ctx, token, "setMyCommands", &commands, CALL_TIMEOUT).await {
        tracing::debug!(code = f.code, "telegram: setMyCommands failed (ignored)");
    }
    step(call(ctx, token, "deleteWebhook", &json!({}), CALL_TIMEOUT).await)?;
    let body = json!({
        "offset": 0, "timeout": 5, "limit": 100,
        "allowed_updates": ["message", "channel_post", "my_chat_member"],
    });
    let updates = step(call(ctx, token, "getUpdates", &body, Duration::from_secs(15)).await)?;
    let mut chats: Vec<Value> = Vec::new();
    for update in updates.as_array().into_iter().flatten() {
        let m = update
            .get("message")
            .or_else(|| update.get("channel_post"))
            .or_else(|| update.get("my_chat_member"));
        let Some(m) = m else { continue };
        let chat = &m["chat"];
        let Some(id) = chat["id"].as_i64() else {
            continue;
        };
        if m["text"].as_str().is_some_and(|t| t.starts_with("/start")) {
            let hello = json!({
                "chat_id": id,
                "text": format!("👋 Molecule AI found this chat. Its chat ID is {id}."),
            });
            let _ = call(ctx, token, "sendMessage", &hello, CALL_TIMEOUT).await;
        }
        let id = id.to_string();
        if chats.iter().any(|c| c["chat_id"] == json!(id)) {
            continue;
        }
        let name = chat["title"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let first = chat["first_name"].as_str().unwrap_or("");
                let last = chat["last_name"].as_str().unwrap_or("");
                format!("{first} {last}").trim().to_owned()
            });
        chats.push(json!({"chat_id": id, "name": name, "type": chat["type"]}));
    }
    let username = me["username"].as_str().unwrap_or("").to_owned();
    let reads_all = me["can_read_all_group_messages"].as_bool().unwrap_or(false);
    let privacy_warning = if reads_all {
        String::new()
    } else {
        format!(
            "@{username} has privacy mode on: in groups it only sees commands and replies. \
             To let it read every message, open @BotFather, send /setprivacy, choose @{username} \
             and select Disable."
        )
    };
    Ok(json!({
        "bot_username": username,
        "chats": chats,
        "can_read_all_group_messages": reads_all,
        "privacy_warning": privacy_warning,
        "hint": "For groups: add bot and send a message. For DMs: send /start to the bot. Then retry.",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format() {
        assert!(token_format_ok("123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ_-abcd"));
        assert!(!token_format_ok("123456:short"));
        assert!(!token_format_ok("abc:ABCDEFGHIJKLMNOPQRSTUVWXYZ_-abcd"));
        assert!(!token_format_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZ_-abcd"));
    }

    #[test]
    fn cut_prefers_paragraphs() {
        assert_eq!(cut("a\n\nb\nc d"), 1);
        assert_eq!(cut("ab\nc d"), 2);
        assert_eq!(cut("ab c"), 2);
        assert_eq!(cut("abcd"), 0);
    }
}
