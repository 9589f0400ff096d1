//! Chat channels (spec: scheduler-channels-mcp §6–7.1): users talk to their agents from
//! Telegram, Slack, Discord and Lark.
//!
//! - [`adapter`]: the contract every platform implements, the static registry [`ADAPTERS`],
//!   the configurable base URLs ([`Endpoints`]) and the shared HTTP client ([`Ctx`]);
//!   [`telegram`], [`slack`], [`discord`], [`lark`]: one adapter each.
//! - [`ChannelManager`]: the supervised `channel-manager` loop. Each pass (every
//!   [`Settings::reconcile_every`], and at once after a channel is created, changed or
//!   deleted) reads the enabled channels of polling adapters, takes or renews a lease on each
//!   in the database (one poller per channel across replicas), and starts, restarts (a changed
//!   row) or stops pollers; a poller that ended is started again after a backoff.
//! - `inbound`: a message (polled or from a verified webhook) goes to the agent through the
//!   A2A proxy as the system caller `channel:<type>`; its reply goes back out through the
//!   adapter. `webhook`: the `POST /webhooks/:type` receiver, which verifies the platform's
//!   signature or secret against each channel before it reads anything from the body.

pub mod adapter;
pub mod discord;
mod inbound;
pub mod lark;
mod poller;
mod registry;
pub mod slack;
pub mod telegram;
mod webhook;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::WorkspaceId;
use molecule_store::Store;
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::EventBus;
use crate::supervisor::Supervisor;

pub use adapter::{Adapter, AdapterError, Ctx, Endpoints};
pub use inbound::OutboundError;
pub use registry::{ADAPTERS, adapter};
pub use webhook::WebhookAnswer;

/// The name of the manager's loop on `/admin/liveness`.
pub const LOOP_NAME: &str = "channel-manager";

/// The manager's timings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the manager reconciles pollers with the database (and renews leases).
    pub reconcile_every: Duration,
    /// How long a polling lease lasts without renewal (longer than `reconcile_every`).
    pub lease: Duration,
    /// The bound on one agent call for an inbound message.
    pub reply_timeout: Duration,
    /// How long chat history is kept without new messages.
    pub history_ttl: Duration,
    /// The first restart delay of a poller that ended (doubling, up to 5 minutes).
    pub restart_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reconcile_every: Duration::from_secs(10),
            lease: Duration::from_secs(45),
            reply_timeout: Duration::from_secs(5 * 60),
            history_ttl: Duration::from_secs(24 * 60 * 60),
            restart_backoff: Duration::from_secs(5),
        }
    }
}

/// The channel manager. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChannelManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    a2a: molecule_a2a::Proxy,
    events: EventBus,
    ctx: Ctx,
    settings: Settings,
    /// This process's name on polling leases.
    holder: String,
    pollers: Mutex<HashMap<Uuid, poller::Poller>>,
    /// Channels whose poller is paused here (a discovery uses their bot).
    paused: Mutex<HashSet<Uuid>>,
    wake: Notify,
}

impl ChannelManager {
    /// A manager over these parts.
    pub fn new(
        store: Store,
        a2a: molecule_a2a::Proxy,
        events: EventBus,
        ctx: Ctx,
        settings: Settings,
    ) -> Self {
        let manager = ChannelManager {
            inner: Arc::new(Inner {
                store,
                a2a,
                events,
                ctx,
                settings,
                holder: format!("replica-{}", Uuid::new_v4()),
                pollers: Mutex::new(HashMap::new()),
                paused: Mutex::new(HashSet::new()),
                wake: Notify::new(),
            }),
        };
        // Schedules' answers are posted to the workspace's Slack channels (§6.5); the newest
        // manager takes them.
        let weak = Arc::downgrade(&manager.inner);
        manager
            .inner
            .events
            .set_cron_output(Arc::new(move |ws, text| {
                if let Some(inner) = weak.upgrade() {
                    let manager = ChannelManager { inner };
                    tokio::spawn(async move { manager.broadcast_cron_output(ws, &text).await });
                }
            }));
        manager
    }

    /// `broadcast_to_workspace_channels` (spec §6.5, invariant 14): a schedule's non-empty
    /// answer goes to every enabled Slack channel of the workspace, cut to 500 characters
    /// (497 and `...`), without the channel budget; failures are logged.
    pub async fn broadcast_cron_output(&self, ws: WorkspaceId, text: &str) {
        let text = cut_for_broadcast(text);
        if text.trim().is_empty() {
            return;
        }
        let channels = match self.inner.store.channels().list(ws).await {
            Ok(channels) => channels,
            Err(e) => {
                tracing::warn!(workspace = %ws, error = %e, "channels: cannot list for cron output");
                return;
            }
        };
        for c in channels
            .iter()
            .filter(|c| c.enabled && c.channel_type == "slack")
        {
            if let Err(e) = self.send_outbound(ws, c.id, &text, false).await {
                tracing::warn!(channel = %c.id, error = %e, "channels: cron output not posted");
            }
        }
    }

    /// The same manager sending through another proxy, or with other endpoints/settings.
    pub fn rebuilt(
        &self,
        a2a: molecule_a2a::Proxy,
        ctx: Option<Ctx>,
        settings: Option<Settings>,
    ) -> Self {
        Self::new(
            self.inner.store.clone(),
            a2a,
            self.inner.events.clone(),
            ctx.unwrap_or_else(|| self.inner.ctx.clone()),
            settings.unwrap_or_else(|| self.inner.settings.clone()),
        )
    }

    /// The adapters' context (client and endpoints).
    pub fn ctx(&self) -> &Ctx {
        &self.inner.ctx
    }

    /// This replica's name on polling leases.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// Asks the loop for a pass now (a channel was created, changed or deleted).
    pub fn reload(&self) {
        self.inner.wake.notify_one();
    }

    /// Starts the `channel-manager` loop under the supervisor. Stopping the loop (shutdown,
    /// or a panic before its restart) stops every poller.
    pub fn spawn(&self, supervisor: &Supervisor) {
        let manager = self.clone();
        let sup = supervisor.clone();
        supervisor.spawn_task(LOOP_NAME, move || {
            let (manager, sup) = (manager.clone(), sup.clone());
            async move {
                let _stop = poller::StopAll(manager.clone());
                loop {
                    manager.reconcile().await;
                    sup.record_tick(LOOP_NAME);
                    let every = manager.inner.settings.reconcile_every;
                    tokio::select! {
                        () = manager.inner.wake.notified() => {}
                        () = tokio::time::sleep(every) => {}
                    }
                }
            }
        });
    }
}

/// Text of at most 500 characters: longer text is cut to 497 and `...`.
pub fn cut_for_broadcast(text: &str) -> String {
    if text.chars().count() <= 500 {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(497).collect();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::cut_for_broadcast;

    #[test]
    fn broadcasts_are_cut_to_500_characters() {
        assert_eq!(cut_for_broadcast("short"), "short");
        let long = "é".repeat(600);
        let cut = cut_for_broadcast(&long);
        assert_eq!(cut.chars().count(), 500);
        assert!(cut.ends_with("é..."));
        assert_eq!(cut_for_broadcast(&"x".repeat(500)), "x".repeat(500));
    }
}
