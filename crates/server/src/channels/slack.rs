//! Slack (spec §6.6): the Web API's `chat.postMessage` with a bot token, or an incoming
//! webhook URL; inbound Events API and slash commands, authenticated with the app's signing
//! secret (`v0` HMAC-SHA256 over `v0:<timestamp>:<body>`, timestamps within five minutes;
//! spec §D1). A channel without a `signing_secret` accepts no webhook.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::adapter::{
    Adapter, AdapterError, CALL_TIMEOUT, Config, Ctx, Endpoints, Field, InboundMessage, Parsed,
    SIGNATURE_WINDOW, WebhookRequest, chat_ids, check_fields, chunks, fresh, hex, same_secret,
    text,
};

/// The Slack adapter.
#[derive(Debug, Clone, Copy)]
pub struct Slack;

const SCHEMA: &[Field] = &[
    Field {
        key: "bot_token",
        label: "Bot Token",
        kind: "password",
        required: false,
        sensitive: true,
        placeholder: Some("xoxb-..."),
        help: Some("Bot User OAuth Token (needs chat:write)"),
    },
    Field {
        key: "channel_id",
        label: "Channel ID",
        kind: "text",
        required: false,
        sensitive: false,
        placeholder: Some("C0123456789"),
        help: None,
    },
    Field {
        key: "webhook_url",
        label: "Incoming Webhook URL",
        kind: "password",
        required: false,
        sensitive: true,
        placeholder: Some("https://hooks.slack.com/services/..."),
        help: Some("Instead of a bot token: post only"),
    },
    Field {
        key: "signing_secret",
        label: "Signing Secret",
        kind: "password",
        required: false,
        sensitive: true,
        placeholder: None,
        help: Some("From the app's Basic Information; needed to receive messages"),
    },
    Field {
        key: "username",
        label: "Bot Name",
        kind: "text",
        required: false,
        sensitive: false,
        placeholder: None,
        help: None,
    },
    Field {
        key: "icon_emoji",
        label: "Icon Emoji",
        kind: "text",
        required: false,
        sensitive: false,
        placeholder: Some(":robot_face:"),
        help: None,
    },
];

/// The most characters of one message block.
const MAX_BLOCK: usize = 3000;

/// Markdown as Slack's mrkdwn: tables, headings, bold, strike-through, links and rules.
pub fn to_mrkdwn(markdown: &str) -> String {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_table_start(&lines[i..]) {
            let end = lines[i..]
                .iter()
                .position(|l| !l.contains('|'))
                .map_or(lines.len(), |n| i + n);
            out.push(table_block(&lines[i..end]));
            i = end;
            continue;
        }
        i += 1;
        let trimmed = line.trim();
        if matches!(trimmed, "---" | "***" | "___") {
            out.push("----------".to_owned());
            continue;
        }
        if trimmed.starts_with('#') {
            let heading = trimmed.trim_start_matches('#').trim();
            out.push(format!("*{heading}*"));
            continue;
        }
        out.push(inline(line));
    }
    out.join("\n")
}

/// A table starts here: a line with `|` followed by a separator line with `|` and `---`.
fn is_table_start(lines: &[&str]) -> bool {
    matches!(lines, [head, sep, ..] if head.contains('|') && sep.contains('|') && sep.contains("---"))
}

/// The cells of one table line, without the outer pipes.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|').map(|c| c.trim().to_owned()).collect()
}

/// A Markdown table (header, separator, rows) as a fenced block of space-padded columns.
fn table_block(lines: &[&str]) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != 1)
        .map(|(_, l)| cells(l))
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let body: Vec<String> = rows
        .iter()
        .map(|row| {
            let padded: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(c, w)| {
                    let cell = row.get(c).map_or("", String::as_str);
                    let pad = w.saturating_sub(cell.chars().count());
                    format!("{cell}{}", " ".repeat(pad))
                })
                .collect();
            padded.join("  ").trim_end().to_owned()
        })
        .collect();
    format!("```\n{}\n```", body.join("\n"))
}

/// `**x**` → `*x*`, `~~x~~` → `~x~`, `[t](u)` → `<u|t>`.
fn inline(line: &str) -> String {
    let line = line.replace("**", "*").replace("~~", "~");
    let mut out = String::with_capacity(line.len());
    let mut rest = line.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let url_part = &after[close + 2..];
            url_part
                .find(')')
                .map(|end| (&after[..close], &url_part[..end], close + 2 + end + 1))
        });
        match link {
            Some((label, url, used)) => {
                out.push_str(&rest[..open]);
                out.push_str(&format!("<{url}|{label}>"));
                rest = &after[used..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn signature(secret: &str, timestamp: &str, body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    Some(format!("v0={}", hex(&mac.finalize().into_bytes())))
}

fn metadata() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("platform".into(), json!("slack"));
    m
}

#[async_trait::async_trait]
impl Adapter for Slack {
    fn channel_type(&self) -> &'static str {
        "slack"
    }

    fn display_name(&self) -> &'static str {
        "Slack"
    }

    fn config_schema(&self) -> &'static [Field] {
        SCHEMA
    }

    fn validate_config(&self, endpoints: &Endpoints, config: &Config) -> Result<(), AdapterError> {
        check_fields(SCHEMA, config)?;
        let token = text(config, "bot_token");
        let hook = text(config, "webhook_url");
        if token.is_empty() && hook.is_empty() {
            return Err(AdapterError::Invalid(
                "either bot_token or webhook_url is required".into(),
            ));
        }
        if !token.is_empty() && text(config, "channel_id").is_empty() {
            return Err(AdapterError::Invalid(
                "channel_id is required with bot_token".into(),
            ));
        }
        let prefix = format!("{}/", endpoints.slack_hooks);
        if !hook.is_empty() && !hook.starts_with(&prefix) {
            return Err(AdapterError::Invalid(format!(
                "webhook_url must start with {prefix}"
            )));
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
            let hook = text(config, "webhook_url");
            if !hook.starts_with(&format!("{}/", ctx.endpoints.slack_hooks)) {
                return Err(AdapterError::Invalid("slack: no usable webhook_url".into()));
            }
            let resp = ctx
                .http
                .post(hook)
                .json(&json!({ "text": message }))
                .timeout(CALL_TIMEOUT)
                .send()
                .await
                .map_err(|_| AdapterError::Transport("slack"))?;
            return match resp.status().as_u16() {
                200 => Ok(()),
                code => Err(AdapterError::Api(format!("slack: webhook returned {code}"))),
            };
        }
        let channel = if chat_id.is_empty() {
            text(config, "channel_id")
        } else {
            chat_id
        };
        if channel.is_empty() {
            return Err(AdapterError::Invalid("slack: no channel_id".into()));
        }
        let converted = to_mrkdwn(message);
        let cut = |w: &str| w.rfind('\n').unwrap_or(0);
        for chunk in chunks(&converted, MAX_BLOCK, cut) {
            let mut body = json!({
                "channel": channel, "text": chunk,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}],
            });
            for key in ["username", "icon_emoji"] {
                if !text(config, key).is_empty() {
                    body[key] = json!(text(config, key));
                }
            }
            let resp = ctx
                .http
                .post(format!("{}/chat.postMessage", ctx.endpoints.slack_api))
                .bearer_auth(token)
                .json(&body)
                .timeout(CALL_TIMEOUT)
                .send()
                .await
                .map_err(|_| AdapterError::Transport("slack"))?;
            let answer: Value = resp
                .json()
                .await
                .map_err(|_| AdapterError::Transport("slack"))?;
            if answer["ok"].as_bool() != Some(true) {
                let error = answer["error"].as_str().unwrap_or("unknown");
                return Err(AdapterError::Api(format!("slack: API error: {error}")));
            }
        }
        Ok(())
    }

    fn verify(&self, request: &WebhookRequest, config: &Config) -> bool {
        let secret = text(config, "signing_secret");
        let (Some(ts), Some(given)) = (
            request.header("x-slack-request-timestamp"),
            request.header("x-slack-signature"),
        ) else {
            return false;
        };
        if secret.is_empty() || !fresh(ts, request.now, SIGNATURE_WINDOW) {
            return false;
        }
        signature(secret, ts, &request.body)
            .is_some_and(|expected| same_secret(expected.as_bytes(), given.as_bytes()))
    }

    fn parse_webhook(&self, request: &WebhookRequest, _: &Config) -> Result<Parsed, AdapterError> {
        let form = request
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if form {
            let fields: Map<String, Value> = url::form_urlencoded::parse(&request.body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            let f = |k: &str| {
                fields
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            if f("command").is_empty() {
                return Ok(Parsed::Nothing);
            }
            return Ok(Parsed::Message(InboundMessage {
                chat_id: f("channel_id"),
                user_id: f("user_id"),
                username: f("user_name"),
                text: format!("{} {}", f("command"), f("text")).trim().to_owned(),
                message_id: f("trigger_id"),
                metadata: metadata(),
            }));
        }
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|_| AdapterError::Parse("invalid JSON".into()))?;
        if body["type"] == "url_verification" {
            return Ok(Parsed::Handshake(json!({ "challenge": body["challenge"] })));
        }
        let event = &body["event"];
        if event.get("bot_id").is_some() || event["subtype"] == "bot_message" {
            return Ok(Parsed::Nothing);
        }
        let text = event["text"].as_str().unwrap_or("");
        if event["type"] != "message" || text.is_empty() {
            return Ok(Parsed::Nothing);
        }
        let user = event["user"].as_str().unwrap_or("").to_owned();
        Ok(Parsed::Message(InboundMessage {
            chat_id: event["channel"].as_str().unwrap_or("").to_owned(),
            user_id: user.clone(),
            username: user,
            text: text.to_owned(),
            message_id: event["ts"].as_str().unwrap_or("").to_owned(),
            metadata: metadata(),
        }))
    }

    fn accepts_chat(&self, config: &Config, chat_id: &str) -> bool {
        let mut chats = chat_ids(config);
        chats.extend(super::adapter::split_list(text(config, "channel_id")));
        chats.is_empty() || chats.iter().any(|c| c == chat_id)
    }

    fn destinations(&self, config: &Config) -> Vec<String> {
        if text(config, "bot_token").is_empty() {
            return vec![String::new()];
        }
        let chats = chat_ids(config);
        if chats.is_empty() {
            super::adapter::split_list(text(config, "channel_id"))
        } else {
            chats
        }
    }
}

/// A request signature for tests and tools: the `X-Slack-Signature` of `body` at `timestamp`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    signature(secret, timestamp, body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrkdwn() {
        assert_eq!(to_mrkdwn("# Title"), "*Title*");
        assert_eq!(to_mrkdwn("**b** ~~s~~"), "*b* ~s~");
        assert_eq!(
            to_mrkdwn("see [docs](https://x.y)"),
            "see <https://x.y|docs>"
        );
        assert_eq!(to_mrkdwn("---"), "----------");
        assert_eq!(to_mrkdwn("[not a link"), "[not a link");
    }

    #[test]
    fn tables_become_fenced_padded_columns() {
        let md = "Results:\n| name | score |\n|---|---:|\n| ada | 10 |\n| bo | 7 |\nend";
        assert_eq!(
            to_mrkdwn(md),
            "Results:\n```\nname  score\nada   10\nbo    7\n```\nend"
        );
        // A lone pipe or a rule is not a table.
        assert_eq!(to_mrkdwn("a | b\n---"), "a | b\n----------");
    }
}
