//! The pollers of polling adapters (Telegram): one per enabled channel across replicas (a
//! lease in the database), restarted when the channel's row changes, started again with a
//! backoff when one ends (a revoked token, a panic), stopped when the channel is disabled or
//! deleted or its lease is lost (spec §6.4, §D12, §D13).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use molecule_store::Channel;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::adapter::{self, InboundMessage, PollSink, text};
use super::{ChannelManager, registry};

/// The longest wait before a failed poller is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// A running (or ended) poller.
#[derive(Debug)]
pub(super) struct Poller {
    /// The row it was started from (`updated_at` and config).
    fingerprint: u64,
    task: JoinHandle<()>,
    workspace: molecule_domain::WorkspaceId,
    /// The SHA-256 of its bot token (never the token: the manager's `Debug` shows this).
    token_hash: Vec<u8>,
    /// Consecutive ends, for the restart backoff.
    failures: u32,
    /// Not before this may it be started again (after an end).
    retry_at: Option<Instant>,
}

/// Aborts every poller when dropped (the manager's loop ended).
pub(super) struct StopAll(pub(super) ChannelManager);

impl Drop for StopAll {
    fn drop(&mut self) {
        for (_, p) in self.0.inner.pollers.lock().drain() {
            p.task.abort();
        }
    }
}

fn token_hash(token: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

fn fingerprint(c: &Channel) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.updated_at.unix_timestamp_nanos().hash(&mut h);
    serde_json::Value::Object(c.config.clone())
        .to_string()
        .hash(&mut h);
    h.finish()
}

/// What a poller reports to the manager.
struct Sink {
    manager: ChannelManager,
    channel: Uuid,
}

#[async_trait::async_trait]
impl PollSink for Sink {
    fn dispatch(&self, msg: InboundMessage) {
        // Off the poll loop: a slow agent never holds up the bot (spec §D15).
        let (manager, channel) = (self.manager.clone(), self.channel);
        tokio::spawn(async move { manager.on_polled(channel, msg).await });
    }

    async fn reset_history(&self, chat_id: &str) {
        let channels = self.manager.inner.store.channels();
        if let Err(e) = channels.clear_history(self.channel, chat_id).await {
            tracing::warn!(channel = %self.channel, error = %e, "channels: history reset failed");
        }
    }

    async fn left_chat(&self, chat_id: &str) {
        self.manager.disable_chat("telegram", chat_id).await;
    }
}

impl ChannelManager {
    /// One pass: poll exactly the enabled channels of polling adapters whose lease this
    /// replica holds.
    pub async fn reconcile(&self) {
        let inner = &self.inner;
        let rows = match inner.store.channels().enabled(None).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "channels: cannot read channels");
                return;
            }
        };
        let wanted: HashMap<Uuid, Channel> = rows
            .into_iter()
            .filter(|c| registry::adapter(&c.channel_type).is_some_and(|a| a.polls()))
            .filter(|c| {
                if let Some(e) = &c.config_error {
                    tracing::warn!(channel = %c.id, error = %e, "channels: config unreadable");
                }
                c.config_error.is_none()
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let paused = inner.paused.lock().clone();
        let gone: Vec<Uuid> = inner
            .pollers
            .lock()
            .keys()
            .filter(|id| !wanted.contains_key(id) || paused.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.stop_poller(id).await;
        }
        let lease =
            time::Duration::try_from(inner.settings.lease).unwrap_or(time::Duration::MINUTE);
        for (id, channel) in wanted {
            if paused.contains(&id) {
                continue;
            }
            let now = time::OffsetDateTime::now_utc();
            match inner
                .store
                .channels()
                .claim_poll(id, &inner.holder, now, lease)
                .await
            {
                Ok(true) => self.ensure_poller(channel),
                Ok(false) => {
                    // Another replica polls it.
                    if let Some(p) = inner.pollers.lock().remove(&id) {
                        p.task.abort();
                    }
                }
                Err(e) => tracing::warn!(channel = %id, error = %e, "channels: lease failed"),
            }
        }
    }

    /// Starts the channel's poller unless one runs for the same row, restarting it when the
    /// row changed and (after the backoff) when it ended.
    fn ensure_poller(&self, channel: Channel) {
        let Some(adapter) = registry::adapter(&channel.channel_type) else {
            return;
        };
        let fp = fingerprint(&channel);
        let mut pollers = self.inner.pollers.lock();
        let mut failures = 0;
        if let Some(p) = pollers.get_mut(&channel.id) {
            if p.fingerprint == fp {
                if !p.task.is_finished() {
                    return;
                }
                let now = Instant::now();
                match p.retry_at {
                    None => {
                        p.failures = p.failures.saturating_add(1);
                        let base = self.inner.settings.restart_backoff;
                        let delay = base
                            .checked_mul(1 << p.failures.min(10))
                            .unwrap_or(MAX_BACKOFF)
                            .min(MAX_BACKOFF);
                        tracing::warn!(channel = %channel.id, ?delay, "channels: poller ended; restarting later");
                        p.retry_at = Some(now + delay);
                        return;
                    }
                    Some(at) if at > now => return,
                    Some(_) => failures = p.failures,
                }
            }
            p.task.abort();
        }
        let sink = Arc::new(Sink {
            manager: self.clone(),
            channel: channel.id,
        });
        let ctx = self.inner.ctx.clone();
        let config = channel.config.clone();
        let id = channel.id;
        let task = tokio::spawn(async move {
            if let Err(e) = adapter.poll(&ctx, &config, sink).await {
                tracing::warn!(channel = %id, error = %e, "channels: poller stopped");
            }
        });
        pollers.insert(
            channel.id,
            Poller {
                fingerprint: fp,
                task,
                workspace: channel.workspace_id,
                token_hash: token_hash(text(&channel.config, "bot_token")),
                failures,
                retry_at: None,
            },
        );
    }

    async fn stop_poller(&self, id: Uuid) {
        let removed = self.inner.pollers.lock().remove(&id);
        if let Some(p) = removed {
            p.task.abort();
            let channels = self.inner.store.channels();
            if let Err(e) = channels.release_poll(id, &self.inner.holder).await {
                tracing::warn!(channel = %id, error = %e, "channels: lease release failed");
            }
        }
    }

    /// The channels this replica polls right now.
    pub fn polling(&self) -> Vec<Uuid> {
        let pollers = self.inner.pollers.lock();
        let mut ids: Vec<Uuid> = pollers
            .iter()
            .filter(|(_, p)| !p.task.is_finished())
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Pauses this replica's pollers of the workspace's channels that use `token` (a
    /// discovery is about to poll the same bot); answers the paused channels.
    pub async fn pause_bot(&self, ws: molecule_domain::WorkspaceId, token: &str) -> Vec<Uuid> {
        let ids: Vec<Uuid> = self
            .inner
            .pollers
            .lock()
            .iter()
            .filter(|(_, p)| {
                p.workspace == ws && adapter::same_secret(&p.token_hash, &token_hash(token))
            })
            .map(|(id, _)| *id)
            .collect();
        self.inner.paused.lock().extend(ids.iter().copied());
        for id in &ids {
            self.stop_poller(*id).await;
        }
        ids
    }

    /// Lets paused pollers run again (after a pause of a second) and reconciles.
    pub fn resume_later(&self, ids: Vec<Uuid>) {
        if ids.is_empty() {
            return;
        }
        let manager = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut paused = manager.inner.paused.lock();
            for id in ids {
                paused.remove(&id);
            }
            drop(paused);
            manager.reload();
        });
    }
}
