//! A chat message to the agent and its reply back (spec §6.4 `handle_inbound`), and the
//! outbound path of `…/send` and `…/test` (§6.5).

use std::time::Duration;

use molecule_a2a::reply::Body;
use molecule_a2a::{Caller, Message};
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{Channel, ChannelUpdate, StoreError};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::adapter::{self, InboundMessage};
use super::{ChannelManager, registry};

/// How often the typing indicator is repeated while the agent works.
const TYPING_EVERY: Duration = Duration::from_secs(4);

/// Why an outbound message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// No such channel in this workspace.
    #[error("channel not found")]
    NotFound,
    /// `message_count` reached `channel_budget`.
    #[error("channel budget exceeded")]
    BudgetExceeded,
    /// The channel has no destination.
    #[error("no chat_id configured for channel {0}")]
    NoDestination(Uuid),
    /// Every destination failed (the last error, for logs).
    #[error("every destination failed: {0}")]
    Failed(adapter::AdapterError),
    /// The channel's config cannot be read or its type is unknown.
    #[error("channel config unusable")]
    Unusable,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The text of an agent's A2A answer: the first text part of `result.parts`, else of
/// `result.artifacts[].parts`, else empty.
pub(super) fn reply_text(answer: &Value) -> String {
    let texts = |parts: &Value| -> Option<String> {
        parts
            .as_array()?
            .iter()
            .find_map(|p| p["text"].as_str().map(str::to_owned))
    };
    let result = &answer["result"];
    texts(&result["parts"])
        .or_else(|| {
            result["artifacts"]
                .as_array()?
                .iter()
                .find_map(|a| texts(&a["parts"]))
        })
        .unwrap_or_default()
}

fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl ChannelManager {
    /// A polled message: the row is read again (it may have changed), then handled.
    pub(super) async fn on_polled(&self, channel: Uuid, msg: InboundMessage) {
        match self.inner.store.channels().get_by_id(channel).await {
            Ok(Some(row)) if row.enabled && row.config_error.is_none() => {
                self.handle_inbound(row, msg).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%channel, error = %e, "channels: cannot read channel"),
        }
    }

    /// Hands `msg` to the channel's agent and sends its reply back to the chat.
    pub async fn handle_inbound(&self, channel: Channel, msg: InboundMessage) {
        let inner = &self.inner;
        let Some(adapter) = registry::adapter(&channel.channel_type) else {
            return;
        };
        if !channel.allowed_users.is_empty()
            && !channel
                .allowed_users
                .iter()
                .any(|u| *u == msg.user_id || *u == msg.chat_id)
        {
            tracing::info!(channel = %channel.id, "channels: sender not on the allowlist; dropped");
            return;
        }
        let ttl =
            time::Duration::try_from(inner.settings.history_ttl).unwrap_or(time::Duration::DAY);
        let now = OffsetDateTime::now_utc();
        let store = inner.store.channels();
        let history = store
            .history(channel.id, &msg.chat_id, now, ttl)
            .await
            .unwrap_or_default();
        let kind = &channel.channel_type;
        let body = json!({
            "method": "message/send",
            "params": {
                "message": {
                    "role": "user",
                    "messageId": format!("channel-{kind}-{}-{}", msg.chat_id, msg.message_id),
                    "parts": [{"kind": "text", "text": msg.text}],
                },
                "metadata": {
                    "source": kind, "channel_id": channel.id, "chat_id": msg.chat_id,
                    "user_id": msg.user_id, "username": msg.username,
                    "message_id": msg.message_id, "history": history,
                    "extra": msg.metadata,
                },
            },
        });
        let typing = {
            let (ctx, config, chat) = (
                inner.ctx.clone(),
                channel.config.clone(),
                msg.chat_id.clone(),
            );
            tokio::spawn(async move {
                loop {
                    adapter.send_typing(&ctx, &config, &chat).await;
                    tokio::time::sleep(TYPING_EVERY).await;
                }
            })
        };
        let reply = inner
            .a2a
            .send(Message {
                target: channel.workspace_id,
                caller: Caller::System(format!("channel:{kind}")),
                body: body.to_string().into_bytes(),
                timeout: Some(inner.settings.reply_timeout),
                log: true,
            })
            .await;
        typing.abort();
        let ok = (200..300).contains(&reply.status);
        let text = match &reply.body {
            Body::Agent(_) if !ok => format!("Error: agent returned HTTP {}", reply.status),
            Body::Agent(bytes) => serde_json::from_slice::<Value>(bytes)
                .map(|v| reply_text(&v))
                .unwrap_or_default(),
            Body::Json(v) if !ok => {
                tracing::warn!(channel = %channel.id, status = reply.status, error = %v["error"], "channels: the agent could not be reached");
                return;
            }
            _ => String::new(),
        };
        if !text.is_empty()
            && let Err(e) = adapter
                .send_message(&inner.ctx, &channel.config, &msg.chat_id, &text)
                .await
        {
            tracing::warn!(channel = %channel.id, error = %e, "channels: reply not sent");
            return;
        }
        let entry =
            json!({"user": msg.username, "message": msg.text, "reply": text, "time": now_text()});
        if let Err(e) = store
            .push_history(channel.id, &msg.chat_id, entry, now, ttl)
            .await
        {
            tracing::warn!(channel = %channel.id, error = %e, "channels: history not saved");
        }
        if let Err(e) = store.record_message(channel.id).await {
            tracing::warn!(channel = %channel.id, error = %e, "channels: count not updated");
        }
        let payload = json!({
            "channel_id": channel.id, "channel_type": kind, "username": msg.username,
            "direction": "inbound",
        });
        inner
            .events
            .emit(
                EventType::ChannelMessage,
                Some(channel.workspace_id),
                payload,
            )
            .await;
    }

    /// Disables every enabled channel of `channel_type` bound to `chat_id` (exact membership
    /// in its list): the bot was removed from that chat (spec §D14).
    pub(super) async fn disable_chat(&self, channel_type: &str, chat_id: &str) {
        let store = self.inner.store.channels();
        let Ok(rows) = store.enabled(Some(channel_type)).await else {
            return;
        };
        let mut changed = false;
        for c in rows {
            if adapter::chat_ids(&c.config).iter().any(|x| x == chat_id) {
                let off = ChannelUpdate {
                    enabled: Some(false),
                    ..ChannelUpdate::default()
                };
                changed |= store
                    .update(c.workspace_id, c.id, &off)
                    .await
                    .unwrap_or(false);
            }
        }
        if changed {
            self.reload();
        }
    }

    /// Sends `text` to every destination of the workspace's channel, checking its budget
    /// first when `budget` is set. Succeeds when at least one destination took it (spec
    /// §D11); failures are logged per destination.
    pub async fn send_outbound(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        text: &str,
        budget: bool,
    ) -> Result<(), OutboundError> {
        let inner = &self.inner;
        let store = inner.store.channels();
        let channel = store.get(ws, id).await?.ok_or(OutboundError::NotFound)?;
        if budget
            && let Some(limit) = channel.channel_budget
            && channel.message_count >= limit
        {
            return Err(OutboundError::BudgetExceeded);
        }
        let adapter = registry::adapter(&channel.channel_type).ok_or(OutboundError::Unusable)?;
        if channel.config_error.is_some() {
            return Err(OutboundError::Unusable);
        }
        let destinations = adapter.destinations(&channel.config);
        if destinations.is_empty() {
            return Err(OutboundError::NoDestination(id));
        }
        let mut sent = 0usize;
        let mut last = None;
        for chat in &destinations {
            match adapter
                .send_message(&inner.ctx, &channel.config, chat, text)
                .await
            {
                Ok(()) => sent += 1,
                Err(e) => {
                    tracing::warn!(channel = %id, error = %e, "channels: send failed");
                    last = Some(e);
                }
            }
        }
        if sent == 0 {
            return Err(OutboundError::Failed(
                last.unwrap_or(adapter::AdapterError::Api("nothing sent".into())),
            ));
        }
        store.record_message(id).await?;
        let payload = json!({"channel_id": id, "channel_type": channel.channel_type, "direction": "outbound"});
        inner
            .events
            .emit(EventType::ChannelMessage, Some(ws), payload)
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_text_prefers_parts_then_artifacts() {
        let a = json!({"result": {"parts": [{"kind": "text", "text": "hi"}]}});
        assert_eq!(reply_text(&a), "hi");
        let b = json!({"result": {"artifacts": [{"parts": [{"text": "art"}]}]}});
        assert_eq!(reply_text(&b), "art");
        assert_eq!(reply_text(&json!({"result": {}})), "");
    }
}
