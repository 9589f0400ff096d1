//! `POST /webhooks/:type` (spec §7.1, with §D1–D3, §D7, §D9, §D10 fixed): the request must
//! verify against an enabled channel of that type (its signature or secret, checked before
//! anything is read from the body) or it is 401 and nothing is delivered. Handshakes are
//! answered with exactly one body; a message goes to the channel its chat belongs to (or the
//! `[slug]` it names) and is handled in the background.

use serde_json::{Value, json};

use super::adapter::{Parsed, WebhookRequest, text};
use super::{ChannelManager, registry};

/// The receiver's answer: a status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

fn answer(status: u16, body: Value) -> WebhookAnswer {
    WebhookAnswer { status, body }
}

/// `[slug] rest`: the slug (trimmed, lower case, `[a-z0-9 _-]+`) and the rest (or the whole
/// text when nothing follows).
fn slug(text: &str) -> Option<(String, String)> {
    if !text.starts_with('[') || text.len() <= 2 {
        return None;
    }
    let close = text.find(']').filter(|i| (2..40).contains(i))?;
    let s = text[1..close].trim().to_lowercase();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'_' || b == b'-');
    if !ok {
        return None;
    }
    let rest = text[close + 1..].trim();
    let routed = if rest.is_empty() { text } else { rest };
    Some((s, routed.to_owned()))
}

fn slug_matches(username: &str, slug: &str) -> bool {
    let name = username.to_lowercase();
    !name.is_empty()
        && (name == slug
            || name.replace(' ', "-").starts_with(slug)
            || name.replace(' ', "").starts_with(slug))
}

impl ChannelManager {
    /// Receives one webhook request for `channel_type`.
    pub async fn receive(&self, channel_type: &str, request: WebhookRequest) -> WebhookAnswer {
        let Some(adapter) = registry::adapter(channel_type) else {
            return answer(404, json!({"error": "unknown channel type"}));
        };
        let rows = match self
            .inner
            .store
            .channels()
            .enabled(Some(channel_type))
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "channels: webhook lookup failed");
                return answer(500, json!({"error": "channel lookup failed"}));
            }
        };
        let verified: Vec<_> = rows
            .into_iter()
            .filter(|c| c.config_error.is_none() && adapter.verify(&request, &c.config))
            .collect();
        let Some(first) = verified.first() else {
            tracing::warn!(
                channel_type,
                "channels: webhook refused: no channel verifies it"
            );
            return answer(401, json!({"error": "invalid signature"}));
        };
        let mut msg = match adapter.parse_webhook(&request, &first.config) {
            Ok(Parsed::Message(msg)) => msg,
            Ok(Parsed::Handshake(body)) => return answer(200, body),
            Ok(Parsed::Nothing) => return answer(200, json!({"status": "ignored"})),
            Err(e) => {
                tracing::info!(channel_type, error = %e, "channels: webhook parse failed");
                return answer(400, json!({"error": "webhook parse failed"}));
            }
        };
        let candidates: Vec<_> = verified
            .into_iter()
            .filter(|c| adapter.accepts_chat(&c.config, &msg.chat_id))
            .collect();
        let chosen = match slug(&msg.text) {
            Some((s, routed)) => {
                let found = candidates
                    .iter()
                    .find(|c| slug_matches(text(&c.config, "username"), &s));
                match found {
                    Some(c) => {
                        msg.text = routed;
                        c.clone()
                    }
                    None => {
                        let available: Vec<String> = candidates
                            .iter()
                            .map(|c| text(&c.config, "username"))
                            .filter(|n| !n.is_empty())
                            .map(|n| format!("[{}]", n.to_lowercase().replace(' ', "-")))
                            .collect();
                        return answer(
                            200,
                            json!({"status": "unknown_agent", "requested_slug": s, "available_slugs": available}),
                        );
                    }
                }
            }
            None => match candidates.into_iter().next() {
                Some(c) => c,
                None => return answer(200, json!({"status": "no_channel"})),
            },
        };
        let manager = self.clone();
        tokio::spawn(async move { manager.handle_inbound(chosen, msg).await });
        answer(200, adapter.accepted_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            slug("[Dev Lead] fix it"),
            Some(("dev lead".into(), "fix it".into()))
        );
        assert_eq!(slug("[ops]"), Some(("ops".into(), "[ops]".into())));
        assert_eq!(slug("[a!] x"), None);
        assert_eq!(slug("no slug"), None);
        assert!(slug_matches("Dev Lead", "dev-lead"));
        assert!(slug_matches("Dev Lead", "devlead"));
        assert!(!slug_matches("", "x"));
    }
}
