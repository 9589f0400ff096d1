//! Discord (spec §6.6): outbound through the channel's webhook URL; inbound interactions
//! verified with the channel's own application public key (Ed25519 over
//! `X-Signature-Timestamp` + body, spec §D7), timestamps within five minutes. A channel without
//! a `public_key` accepts no interaction.

use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::{Map, Value, json};

use super::adapter::{
    Adapter, AdapterError, CALL_TIMEOUT, Config, Ctx, Endpoints, Field, InboundMessage, Parsed,
    SIGNATURE_WINDOW, WebhookRequest, check_fields, chunks, fresh, text, unhex,
};

/// The Discord adapter.
#[derive(Debug, Clone, Copy)]
pub struct Discord;

const SCHEMA: &[Field] = &[
    Field {
        key: "webhook_url",
        label: "Webhook URL",
        kind: "password",
        required: true,
        sensitive: true,
        placeholder: Some("https://discord.com/api/webhooks/..."),
        help: Some("Channel settings → Integrations → Webhooks"),
    },
    Field {
        key: "public_key",
        label: "Application Public Key",
        kind: "password",
        required: false,
        sensitive: true,
        placeholder: None,
        help: Some("From the Developer Portal; needed to receive slash commands"),
    },
];

/// The most characters of one message.
const MAX_MESSAGE: usize = 2000;

/// Where a chunk is cut: after the last newline or space in the upper half of the window.
fn cut(window: &str) -> usize {
    let half = window.len() / 2;
    window
        .rfind('\n')
        .or_else(|| window.rfind(' '))
        .filter(|&i| i >= half)
        .map_or(0, |i| i + 1)
}

fn webhook_prefix(endpoints: &Endpoints) -> String {
    format!("{}/api/webhooks/", endpoints.discord)
}

#[async_trait::async_trait]
impl Adapter for Discord {
    fn channel_type(&self) -> &'static str {
        "discord"
    }

    fn display_name(&self) -> &'static str {
        "Discord"
    }

    fn config_schema(&self) -> &'static [Field] {
        SCHEMA
    }

    fn validate_config(&self, endpoints: &Endpoints, config: &Config) -> Result<(), AdapterError> {
        check_fields(SCHEMA, config)?;
        let prefix = webhook_prefix(endpoints);
        if !text(config, "webhook_url").starts_with(&prefix) {
            return Err(AdapterError::Invalid(format!(
                "webhook_url must start with {prefix}"
            )));
        }
        let key = text(config, "public_key");
        if !key.is_empty() && unhex(key).is_none_or(|k| k.len() != 32) {
            return Err(AdapterError::Invalid(
                "public_key must be 64 hex characters (32 bytes)".into(),
            ));
        }
        Ok(())
    }

    async fn send_message(
        &self,
        ctx: &Ctx,
        config: &Config,
        _chat_id: &str,
        message: &str,
    ) -> Result<(), AdapterError> {
        let url = text(config, "webhook_url");
        if !url.starts_with(&webhook_prefix(&ctx.endpoints)) {
            return Err(AdapterError::Invalid(
                "discord: no usable webhook_url".into(),
            ));
        }
        for chunk in chunks(message, MAX_MESSAGE, cut) {
            let resp = ctx
                .http
                .post(url)
                .json(&json!({ "content": chunk }))
                .timeout(CALL_TIMEOUT)
                .send()
                .await
                .map_err(|_| AdapterError::Transport("discord"))?;
            match resp.status().as_u16() {
                200 | 204 => {}
                code => {
                    return Err(AdapterError::Api(format!(
                        "discord: webhook returned {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn verify(&self, request: &WebhookRequest, config: &Config) -> bool {
        let (Some(key), Some(ts), Some(sig)) = (
            unhex(text(config, "public_key")),
            request.header("x-signature-timestamp"),
            request.header("x-signature-ed25519").and_then(unhex),
        ) else {
            return false;
        };
        if key.len() != 32 || !fresh(ts, request.now, SIGNATURE_WINDOW) {
            return false;
        }
        let mut signed = Vec::with_capacity(ts.len() + request.body.len());
        signed.extend_from_slice(ts.as_bytes());
        signed.extend_from_slice(&request.body);
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&signed, &sig)
            .is_ok()
    }

    fn parse_webhook(&self, request: &WebhookRequest, _: &Config) -> Result<Parsed, AdapterError> {
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|_| AdapterError::Parse("invalid JSON".into()))?;
        match body["type"].as_i64() {
            Some(1) => Ok(Parsed::Handshake(json!({"type": 1, "status": "ignored"}))),
            Some(2 | 3) => {
                let data = &body["data"];
                let mut words = vec![format!("/{}", data["name"].as_str().unwrap_or(""))];
                for option in data["options"].as_array().into_iter().flatten() {
                    match &option["value"] {
                        Value::String(s) => words.push(s.clone()),
                        Value::Null => {}
                        other => words.push(other.to_string()),
                    }
                }
                let user = if body["member"]["user"].is_object() {
                    &body["member"]["user"]
                } else {
                    &body["user"]
                };
                let mut metadata = Map::new();
                metadata.insert("platform".into(), json!("discord"));
                metadata.insert("interaction_token".into(), body["token"].clone());
                Ok(Parsed::Message(InboundMessage {
                    chat_id: body["channel_id"].as_str().unwrap_or("").to_owned(),
                    user_id: user["id"].as_str().unwrap_or("").to_owned(),
                    username: user["username"].as_str().unwrap_or("").to_owned(),
                    text: words.join(" "),
                    message_id: body["id"].as_str().unwrap_or("").to_owned(),
                    metadata,
                }))
            }
            _ => Ok(Parsed::Nothing),
        }
    }

    /// An interaction must be answered with an interaction response: a visible
    /// acknowledgement; the agent's reply follows through the webhook URL.
    fn accepted_body(&self) -> Value {
        json!({"type": 4, "data": {"content": "⏳ Working on it…"}, "status": "accepted"})
    }

    fn destinations(&self, _: &Config) -> Vec<String> {
        vec![String::new()]
    }
}
