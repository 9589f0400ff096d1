//! A2A payload normalisation (spec `a2a.md` §1.2.2, pinned by the A2A corpus).
//!
//! Every body the proxy accepts goes through [`normalize`] once; the result is what is
//! dispatched, queued and logged:
//!
//! 1. The body must be a JSON object, else [`NormalizeError::InvalidJson`] (also for an empty
//!    or whitespace body, an array, a truncated object).
//! 2. Without a top-level `jsonrpc` key the object is replaced by the envelope
//!    `{"jsonrpc":"2.0","id":<new uuid v4>,"method":<method>,"params":<params>}`: every other
//!    key, a caller `id` included, is dropped (a missing `method`/`params` becomes `null`). With
//!    a `jsonrpc` key the object is kept as it is, its `id` too.
//! 3. When `params.message` is an object: a missing `messageId` is added (a new uuid v4; an
//!    existing value, even `""`, is kept). `parts` present (any type, even `[]`): untouched.
//!    Otherwise the v0.2 `content` becomes `parts`: a string `S` gives
//!    `[{"kind":"text","text":S}]`, an array is moved verbatim; any other `content` type is
//!    [`NormalizeError::InvalidContentType`], no `content` at all
//!    [`NormalizeError::MissingPartsAndContent`].
//! 4. No `params.message` (`tasks/get`, `tasks/list`, …): no message checks.
//! 5. The method is the top-level `method` when it is a string, else `""`; it is never validated.

use serde_json::{Map, Value, json};
use uuid::Uuid;

/// A normalised A2A request and the fields the proxy pipeline reads from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The normalised JSON-RPC request: what is dispatched, queued and logged.
    pub body: Value,
    /// The A2A method: top-level `method` when it is a string, else `""`.
    pub method: String,
    /// `params.message.messageId` when it is a string (the one added by normalisation
    /// included); may be `""` when the caller sent an empty one.
    pub message_id: Option<String>,
    /// `params.message.metadata.delegation_id` when it is a string.
    pub delegation_id: Option<String>,
    /// `params.expires_in_seconds` when it is an integer greater than zero (the queue TTL), at
    /// most [`MAX_EXPIRES_IN_SECONDS`].
    pub expires_in_seconds: Option<i64>,
}

/// Why a body was refused; each is a 400 whose JSON body is [`NormalizeError::body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not a JSON object.
    #[error("invalid JSON")]
    InvalidJson,
    /// `params.message.content` is neither a string nor an array (and there is no `parts`).
    #[error("invalid params.message.content type")]
    InvalidContentType,
    /// `params.message` has neither `parts` nor `content`.
    #[error("params.message must contain either 'parts' (v0.3) or 'content' (v0.2 compat)")]
    MissingPartsAndContent,
    /// `params.expires_in_seconds` is an integer above [`MAX_EXPIRES_IN_SECONDS`].
    #[error("params.expires_in_seconds must be at most 31536000 (365 days)")]
    ExpiryTooFar,
}

/// The longest queue TTL a message may ask for: 365 days.
pub const MAX_EXPIRES_IN_SECONDS: i64 = 365 * 24 * 60 * 60;

impl NormalizeError {
    /// The exact JSON body of the 400 answer: `{"error": …}`, plus a `"hint"` for the
    /// message-shape errors.
    pub fn body(&self) -> Value {
        match self {
            Self::InvalidJson | Self::ExpiryTooFar => json!({ "error": self.to_string() }),
            Self::InvalidContentType => json!({
                "error": self.to_string(),
                "hint": "content must be a string (v0.2 compat) or omitted in favour of parts (v0.3)",
            }),
            Self::MissingPartsAndContent => json!({
                "error": self.to_string(),
                "hint": r#"v0.3 example: {"parts":[{"kind":"text","text":"..."}]}"#,
            }),
        }
    }
}

/// Normalises a raw A2A request body (spec `a2a.md` §1.2.2).
pub fn normalize(raw: &[u8]) -> Result<Normalized, NormalizeError> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(raw) else {
        return Err(NormalizeError::InvalidJson);
    };

    if !object.contains_key("jsonrpc") {
        let method = object.remove("method").unwrap_or(Value::Null);
        let params = object.remove("params").unwrap_or(Value::Null);
        object = Map::new();
        object.insert("jsonrpc".into(), Value::from("2.0"));
        object.insert("id".into(), Value::from(new_id()));
        object.insert("method".into(), method);
        object.insert("params".into(), params);
    }

    if let Some(Value::Object(message)) = object
        .get_mut("params")
        .and_then(|params| params.get_mut("message"))
    {
        normalize_message(message)?;
    }

    let method = object
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let params = object.get("params");
    let message = params.and_then(|p| p.get("message"));
    let message_id = message
        .and_then(|m| m.get("messageId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let delegation_id = message
        .and_then(|m| m.get("metadata"))
        .and_then(|m| m.get("delegation_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let expires_in_seconds = expiry(params.and_then(|p| p.get("expires_in_seconds")))?;

    Ok(Normalized {
        body: Value::Object(object),
        method,
        message_id,
        delegation_id,
        expires_in_seconds,
    })
}

/// The queue TTL of `params.expires_in_seconds`: an integer greater than zero; zero, negative
/// and non-integer values mean no TTL (spec §1.3); an integer above the limit is refused.
fn expiry(value: Option<&Value>) -> Result<Option<i64>, NormalizeError> {
    let Some(Value::Number(n)) = value else {
        return Ok(None);
    };
    match (n.as_i64(), n.as_u64()) {
        (Some(s), _) if s <= 0 => Ok(None),
        (Some(s), _) if s <= MAX_EXPIRES_IN_SECONDS => Ok(Some(s)),
        (Some(_), _) | (None, Some(_)) => Err(NormalizeError::ExpiryTooFar),
        (None, None) => Ok(None),
    }
}

/// Step 3 on the `params.message` object.
fn normalize_message(message: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    if !message.contains_key("messageId") {
        message.insert("messageId".into(), Value::from(new_id()));
    }
    if message.contains_key("parts") {
        return Ok(());
    }
    let parts = match message.remove("content") {
        None => return Err(NormalizeError::MissingPartsAndContent),
        Some(Value::String(text)) => json!([{ "kind": "text", "text": text }]),
        Some(list @ Value::Array(_)) => list,
        Some(_) => return Err(NormalizeError::InvalidContentType),
    };
    message.insert("parts".into(), parts);
    Ok(())
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}
