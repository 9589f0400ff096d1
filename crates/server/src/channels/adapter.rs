//! The adapter contract (spec: scheduler-channels-mcp §6.1): one implementation per chat
//! platform, in a static registry, each reaching its platform at a configurable base URL
//! ([`Endpoints`]) through one maintained HTTP client ([`Ctx`]).
//!
//! An adapter's errors never carry its platform's URL or token (webhook URLs and bot URLs hold
//! the credential): transport failures become fixed texts.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// A channel's config: string keys and (string) values.
pub type Config = Map<String, Value>;

/// One field of an adapter's config form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The config key.
    pub key: &'static str,
    /// The form label.
    pub label: &'static str,
    /// `text`, `password` or `textarea`.
    pub kind: &'static str,
    /// Whether the config must have it.
    pub required: bool,
    /// Whether it is a credential: sealed at rest, masked when listed.
    pub sensitive: bool,
    /// A placeholder for the form.
    pub placeholder: Option<&'static str>,
    /// A help text for the form.
    pub help: Option<&'static str>,
}

impl Field {
    /// The field as `GET /channels/adapters` lists it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "key": self.key, "label": self.label, "type": self.kind,
            "required": self.required, "sensitive": self.sensitive,
        });
        if let Some(p) = self.placeholder {
            v["placeholder"] = json!(p);
        }
        if let Some(h) = self.help {
            v["help"] = json!(h);
        }
        v
    }
}

/// A message from a chat user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboundMessage {
    /// The chat (or channel) it was written in.
    pub chat_id: String,
    /// The user who wrote it.
    pub user_id: String,
    /// The user's display name.
    pub username: String,
    /// The text.
    pub text: String,
    /// The platform's message id.
    pub message_id: String,
    /// Anything else the adapter knows.
    pub metadata: Map<String, Value>,
}

/// What a webhook request carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A message to hand to the agent.
    Message(InboundMessage),
    /// A platform handshake: answer with exactly this body, dispatch nothing.
    Handshake(Value),
    /// Nothing to dispatch.
    Nothing,
}

/// An inbound webhook request as received: its headers and raw body.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// The request headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Vec<u8>,
    /// When it arrived (signature time windows).
    pub now: OffsetDateTime,
}

impl WebhookRequest {
    /// A header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why an adapter call failed. The texts are safe to log and never carry a URL or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The config breaks a rule of the adapter.
    #[error("{0}")]
    Invalid(String),
    /// The platform refused the call.
    #[error("{0}")]
    Api(String),
    /// The platform could not be reached, or answered something unreadable.
    #[error("{0}: HTTP request failed")]
    Transport(&'static str),
    /// The bot token was revoked (Telegram 401): polling stops.
    #[error("unauthorized: bot token revoked")]
    Unauthorized,
    /// A webhook body that cannot be read.
    #[error("webhook parse failed: {0}")]
    Parse(String),
}

/// The base URLs of the chat platforms' APIs (configurable for tests and proxies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Telegram Bot API (`https://api.telegram.org`).
    pub telegram: String,
    /// Slack Web API (`https://slack.com/api`).
    pub slack_api: String,
    /// Slack incoming webhooks (`https://hooks.slack.com`).
    pub slack_hooks: String,
    /// Discord (`https://discord.com`); webhook URLs start with `<it>/api/webhooks/`.
    pub discord: String,
    /// Lark / Feishu hosts; bot webhook URLs start with `<one>/open-apis/bot/v2/hook/`.
    pub lark: Vec<String>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            telegram: "https://api.telegram.org".into(),
            slack_api: "https://slack.com/api".into(),
            slack_hooks: "https://hooks.slack.com".into(),
            discord: "https://discord.com".into(),
            lark: vec![
                "https://open.feishu.cn".into(),
                "https://open.larksuite.com".into(),
            ],
        }
    }
}

impl Endpoints {
    /// The same endpoints with every base URL pointing at `base` (a local stand-in for
    /// every platform, in tests).
    pub fn all_at(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Endpoints {
            telegram: format!("{base}/telegram"),
            slack_api: format!("{base}/slack/api"),
            slack_hooks: format!("{base}/slack/hooks"),
            discord: format!("{base}/discord"),
            lark: vec![format!("{base}/lark")],
        }
    }
}

/// What every adapter call needs: the HTTP client, the endpoints and the polling settings.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The HTTP client (no redirects, bounded connect time).
    pub http: reqwest::Client,
    /// The platforms' base URLs.
    pub endpoints: Arc<Endpoints>,
    /// How long one Telegram `getUpdates` long poll waits.
    pub poll_timeout: Duration,
    /// How long a poller waits after a failed poll.
    pub poll_retry: Duration,
}

/// The timeout of one ordinary call to a platform.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Ctx {
    /// A context for these endpoints, with a client that follows no redirects.
    pub fn new(endpoints: Endpoints) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CALL_TIMEOUT)
            .build()
            .unwrap_or_default();
        Ctx {
            http,
            endpoints: Arc::new(endpoints),
            poll_timeout: Duration::from_secs(30),
            poll_retry: Duration::from_secs(2),
        }
    }
}

/// What a polling adapter reports to the channel manager.
#[async_trait::async_trait]
pub trait PollSink: Send + Sync {
    /// A message for the agent (handled off the poll loop).
    fn dispatch(&self, msg: InboundMessage);
    /// `/reset`: forget the chat's history.
    async fn reset_history(&self, chat_id: &str);
    /// The bot was removed from the chat: disable the channels bound to it.
    async fn left_chat(&self, chat_id: &str);
}

/// One chat platform.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    /// `telegram`, `slack`, …
    fn channel_type(&self) -> &'static str;
    /// The name shown in the UI.
    fn display_name(&self) -> &'static str;
    /// The config form, in order.
    fn config_schema(&self) -> &'static [Field];
    /// Checks a config; the error says what is wrong.
    fn validate_config(&self, endpoints: &Endpoints, config: &Config) -> Result<(), AdapterError>;
    /// Sends `text` to `chat_id` (ignored by webhook-URL adapters).
    async fn send_message(
        &self,
        ctx: &Ctx,
        config: &Config,
        chat_id: &str,
        text: &str,
    ) -> Result<(), AdapterError>;
    /// Shows a typing indicator, where the platform has one.
    async fn send_typing(&self, _ctx: &Ctx, _config: &Config, _chat_id: &str) {}
    /// Whether the request is authentic for this channel: its signature or secret checks out
    /// against the channel's credential. Runs before anything is read from the body.
    fn verify(&self, request: &WebhookRequest, config: &Config) -> bool;
    /// Reads a verified webhook request.
    fn parse_webhook(
        &self,
        request: &WebhookRequest,
        config: &Config,
    ) -> Result<Parsed, AdapterError>;
    /// Whether inbound messages of `chat_id` belong to this channel (its route key).
    fn accepts_chat(&self, config: &Config, chat_id: &str) -> bool {
        let chats = chat_ids(config);
        chats.is_empty() || chats.iter().any(|c| c == chat_id)
    }
    /// Where outbound messages go: chat ids, or `[""]` for adapters that post to one URL.
    fn destinations(&self, config: &Config) -> Vec<String> {
        chat_ids(config)
    }
    /// The answer to a webhook whose message was accepted for the agent.
    fn accepted_body(&self) -> Value {
        json!({"status": "accepted"})
    }
    /// Whether the adapter polls (a long-lived poller per channel).
    fn polls(&self) -> bool {
        false
    }
    /// Polls until the task is cancelled; returns only when polling cannot go on.
    async fn poll(
        &self,
        _ctx: &Ctx,
        _config: &Config,
        _sink: Arc<dyn PollSink>,
    ) -> Result<(), AdapterError> {
        Ok(())
    }
}

/// A config value as text (`""` when absent or not a string).
pub fn text<'a>(config: &'a Config, key: &str) -> &'a str {
    config.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The config's `chat_id` comma list, trimmed, blanks dropped.
pub fn chat_ids(config: &Config) -> Vec<String> {
    split_list(text(config, "chat_id"))
}

/// A comma list, trimmed, blanks dropped.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Constant-time equality of two secrets (the length is not hidden).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string (either case); `None` when it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Whether a signature's unix timestamp (seconds) is within `window` of `now`: replayed or
/// post-dated requests are refused.
pub fn fresh(timestamp: &str, now: OffsetDateTime, window: i64) -> bool {
    timestamp
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|ts| now.unix_timestamp().checked_sub(ts))
        .is_some_and(|age| age.unsigned_abs() <= window.unsigned_abs())
}

/// How far (seconds) a signed timestamp may be from now.
pub const SIGNATURE_WINDOW: i64 = 5 * 60;

/// Checks the keys every adapter shares: the config's values are strings, and every
/// required field of the schema is there and non-empty.
pub fn check_fields(schema: &[Field], config: &Config) -> Result<(), AdapterError> {
    for (key, value) in config {
        if !value.is_string() {
            return Err(AdapterError::Invalid(format!("{key} must be a string")));
        }
    }
    for field in schema.iter().filter(|f| f.required) {
        if text(config, field.key).trim().is_empty() && field.key != "chat_id" {
            return Err(AdapterError::Invalid(format!(
                "missing required field: {}",
                field.key
            )));
        }
    }
    Ok(())
}

/// A credential shown in a listing: its first and last four characters around `...` when it
/// is longer than eight characters, else `***`.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() > 8 {
        let head: String = chars.iter().take(4).collect();
        let tail: String = chars.iter().skip(chars.len() - 4).collect();
        format!("{head}...{tail}")
    } else {
        "***".into()
    }
}

/// Splits `text` into chunks of at most `max` characters, cutting where `cut` says (given the
/// window, it answers the character count to keep; 0 means a hard cut). Never splits a
/// character.
pub fn chunks(text: &str, max: usize, cut: impl Fn(&str) -> usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let end = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..end];
        let keep = match cut(window) {
            n if n > 0 && n < end && rest.is_char_boundary(n) => n,
            _ => end,
        };
        let (head, tail) = rest.split_at(keep);
        if !head.trim().is_empty() {
            out.push(head.trim().to_owned());
        }
        rest = tail;
    }
    if !rest.trim().is_empty() {
        out.push(rest.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn masks_and_lists() {
        assert_eq!(mask("123:ABCDEFGHIJ"), "123:...GHIJ");
        assert_eq!(mask("short"), "***");
        assert_eq!(split_list(" 1, ,2 ,"), vec!["1", "2"]);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert!(fresh("999800", now, 300));
        assert!(!fresh("999600", now, 300));
        assert!(!fresh("x", now, 300));
    }

    #[test]
    fn chunks_never_split_characters() {
        let text = "é".repeat(10);
        let parts = chunks(&text, 4, |_| 0);
        assert_eq!(parts, vec!["éééé", "éééé", "éé"]);
        let parts = chunks("aa bb cc", 5, |w| w.rfind(' ').unwrap_or(0));
        assert_eq!(parts, vec!["aa", "bb", "cc"]);
    }
}
