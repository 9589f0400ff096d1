//! Lark / Feishu (spec §6.6): outbound through the custom bot's webhook URL; inbound events
//! authenticated by the channel's verification token (compared in constant time, spec §D2).
//! A channel without a `verify_token` accepts no event.

use serde_json::{Map, Value, json};

use super::adapter::{
    Adapter, AdapterError, CALL_TIMEOUT, Config, Ctx, Endpoints, Field, InboundMessage, Parsed,
    WebhookRequest, check_fields, same_secret, text,
};

/// The Lark adapter.
#[derive(Debug, Clone, Copy)]
pub struct Lark;

const SCHEMA: &[Field] = &[
    Field {
        key: "webhook_url",
        label: "Bot Webhook URL",
        kind: "password",
        required: true,
        sensitive: true,
        placeholder: Some("https://open.feishu.cn/open-apis/bot/v2/hook/..."),
        help: None,
    },
    Field {
        key: "verify_token",
        label: "Verification Token",
        kind: "password",
        required: false,
        sensitive: true,
        placeholder: None,
        help: Some("Event subscription token; needed to receive messages"),
    },
];

fn hook_ok(endpoints: &Endpoints, url: &str) -> bool {
    endpoints
        .lark
        .iter()
        .any(|host| url.starts_with(&format!("{host}/open-apis/bot/v2/hook/")))
}

/// The token an event carries: `header.token` (v2) or `token` (v1, handshakes).
fn token_of(body: &Value) -> Option<&str> {
    body["header"]["token"]
        .as_str()
        .or_else(|| body["token"].as_str())
}

#[async_trait::async_trait]
impl Adapter for Lark {
    fn channel_type(&self) -> &'static str {
        "lark"
    }

    fn display_name(&self) -> &'static str {
        "Lark / Feishu"
    }

    fn config_schema(&self) -> &'static [Field] {
        SCHEMA
    }

    fn validate_config(&self, endpoints: &Endpoints, config: &Config) -> Result<(), AdapterError> {
        check_fields(SCHEMA, config)?;
        if !hook_ok(endpoints, text(config, "webhook_url")) {
            let hosts: Vec<_> = endpoints
                .lark
                .iter()
                .map(|h| format!("{h}/open-apis/bot/v2/hook/"))
                .collect();
            return Err(AdapterError::Invalid(format!(
                "webhook_url must start with {}",
                hosts.join(" or ")
            )));
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
        if !hook_ok(&ctx.endpoints, url) {
            return Err(AdapterError::Invalid("lark: no usable webhook_url".into()));
        }
        let resp = ctx
            .http
            .post(url)
            .json(&json!({"msg_type": "text", "content": {"text": message}}))
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|_| AdapterError::Transport("lark"))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(AdapterError::Api(format!(
                "lark: webhook returned {status}"
            )));
        }
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        match answer["code"].as_i64() {
            Some(0) | None => Ok(()),
            Some(code) => Err(AdapterError::Api(format!(
                "lark: api error code={code} msg={}",
                answer["msg"].as_str().unwrap_or("")
            ))),
        }
    }

    fn verify(&self, request: &WebhookRequest, config: &Config) -> bool {
        let expected = text(config, "verify_token");
        if expected.is_empty() {
            return false;
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return false;
        };
        token_of(&body).is_some_and(|t| same_secret(t.as_bytes(), expected.as_bytes()))
    }

    fn parse_webhook(&self, request: &WebhookRequest, _: &Config) -> Result<Parsed, AdapterError> {
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|_| AdapterError::Parse("invalid JSON".into()))?;
        if body["type"] == "url_verification" {
            return Ok(Parsed::Handshake(json!({ "challenge": body["challenge"] })));
        }
        if body["header"]["event_type"] != "im.message.receive_v1" {
            return Ok(Parsed::Nothing);
        }
        let event = &body["event"];
        let message = &event["message"];
        if message["message_type"] != "text" {
            return Ok(Parsed::Nothing);
        }
        let content: Value =
            serde_json::from_str(message["content"].as_str().unwrap_or("")).unwrap_or(Value::Null);
        let text = content["text"].as_str().unwrap_or("").trim().to_owned();
        if text.is_empty() {
            return Ok(Parsed::Nothing);
        }
        let sender = &event["sender"]["sender_id"];
        let user = sender["user_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or_else(|| sender["open_id"].as_str())
            .unwrap_or("")
            .to_owned();
        let mut metadata = Map::new();
        metadata.insert("platform".into(), json!("lark"));
        metadata.insert("chat_type".into(), message["chat_type"].clone());
        Ok(Parsed::Message(InboundMessage {
            chat_id: message["chat_id"].as_str().unwrap_or("").to_owned(),
            user_id: user.clone(),
            username: user,
            text,
            message_id: message["message_id"].as_str().unwrap_or("").to_owned(),
            metadata,
        }))
    }

    fn destinations(&self, _: &Config) -> Vec<String> {
        vec![String::new()]
    }
}
