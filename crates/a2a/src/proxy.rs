//! The A2A proxy (a2a.md §1.2): the checks of one message in the spec's order, then delivery.
//!
//! The server establishes the caller (token, system prefix) before calling [`Proxy::send`];
//! from there the order is: hierarchy → target lookup → budget → payload normalisation →
//! poll-mode short-circuit → capacity (queue) → URL → delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::{DeliveryMode, WorkspaceId, WorkspaceStatus};
use molecule_store::{NewActivity, Store, Workspace};
use parking_lot::Mutex;
use serde_json::json;

use crate::caller::Caller;
use crate::log;
use crate::normalize::{Normalized, normalize};
use crate::platform::Platform;
use crate::reply::Reply;
use crate::ssrf::{UrlPolicy, vetted_client_builder};

/// The proxy's settings (a2a.md §1.10).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a delivery may stay silent; every event about the target resets it.
    pub idle_timeout: Duration,
    /// The most a delivery from another workspace may take (the user's have none).
    pub agent_ceiling: Duration,
    /// The connect timeout.
    pub connect_timeout: Duration,
    /// Deliveries of one queued message before it is marked failed.
    pub max_attempts: i32,
    /// The pause before a delegation's one retry.
    pub delegation_retry_delay: Duration,
    /// The address policy for agent URLs.
    pub policy: UrlPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idle_timeout: Duration::from_secs(300),
            agent_ceiling: Duration::from_secs(30 * 60),
            connect_timeout: Duration::from_secs(10),
            max_attempts: 5,
            delegation_retry_delay: Duration::from_secs(8),
            policy: UrlPolicy {
                dev_mode: false,
                saas: false,
            },
        }
    }
}

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Message {
    /// The target workspace.
    pub target: WorkspaceId,
    /// Who sends it.
    pub caller: Caller,
    /// The request body as received.
    pub body: Vec<u8>,
    /// A bound on the whole delivery (`X-Timeout`).
    pub timeout: Option<Duration>,
    /// Whether to write activity rows and broadcasts for it.
    pub log: bool,
}

/// The A2A proxy, queue and delegations. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) client: reqwest::Client,
    pub(crate) settings: Settings,
    /// The capabilities each workspace declared in its last heartbeat (in memory, as the
    /// reference keeps them; a restart forgets them until the next heartbeat).
    pub(crate) capabilities: Mutex<HashMap<WorkspaceId, Vec<String>>>,
    /// Workspaces whose queue a task of this process is draining, each with "another drain
    /// was asked for meanwhile".
    pub(crate) draining: Mutex<HashMap<WorkspaceId, bool>>,
    /// Token usage from answers, on its way to the background writer.
    pub(crate) usage: crate::usage::Recorder,
}

impl Proxy {
    /// A proxy over `store`, calling `platform` for events and the lifecycle. Its HTTP client
    /// follows no redirects, ignores proxy environment variables and connects only to
    /// addresses the policy allows.
    pub fn new(store: Store, platform: Arc<dyn Platform>, settings: Settings) -> Self {
        let client = vetted_client_builder(settings.policy)
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|e| {
                // Only a TLS or resolver set-up failure can get here; every URL is still
                // checked against the policy before sending.
                tracing::error!(error = %e, "a2a: HTTP client set-up failed; using the default");
                reqwest::Client::new()
            });
        Proxy {
            inner: Arc::new(Inner {
                store,
                platform,
                client,
                settings,
                capabilities: Mutex::new(HashMap::new()),
                draining: Mutex::new(HashMap::new()),
                usage: crate::usage::Recorder::new(),
            }),
        }
    }

    /// The same proxy with other settings (a new HTTP client).
    pub fn with_settings(&self, settings: Settings) -> Self {
        Proxy::new(
            self.inner.store.clone(),
            Arc::clone(&self.inner.platform),
            settings,
        )
    }

    /// Records the capabilities a workspace declared in a heartbeat (none: forgets them).
    pub fn set_capabilities(&self, id: WorkspaceId, capabilities: Vec<String>) {
        let mut all = self.inner.capabilities.lock();
        if capabilities.is_empty() {
            all.remove(&id);
        } else {
            all.insert(id, capabilities);
        }
    }

    /// Whether a workspace declared `capability` in its last heartbeat.
    pub fn has_capability(&self, id: WorkspaceId, capability: &str) -> bool {
        self.inner
            .capabilities
            .lock()
            .get(&id)
            .is_some_and(|c| c.iter().any(|x| x == capability))
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Delivers one message, or queues it, and says what the caller gets back.
    pub async fn send(&self, msg: Message) -> Reply {
        let store = &self.inner.store;
        if let Caller::Workspace(caller) = msg.caller
            && caller != msg.target
        {
            match store.workspaces().can_communicate(caller, msg.target).await {
                Ok(true) => {}
                Ok(false) => return denied(),
                Err(e) => {
                    tracing::warn!(error = %e, "a2a: hierarchy check failed (denied)");
                    return denied();
                }
            }
        }
        let ws = match store.workspaces().get(msg.target).await {
            Ok(Some(ws)) if !ws.status.is_removed() => ws,
            Ok(_) => return Reply::error(404, "workspace not found"),
            Err(e) => {
                tracing::error!(error = %e, "a2a: target lookup failed");
                return Reply::error(500, "lookup failed");
            }
        };
        if ws
            .budget_limit
            .is_some_and(|limit| ws.monthly_spend >= limit)
        {
            return Reply::error(402, "workspace budget limit exceeded");
        }
        let normalized = match normalize(&msg.body) {
            Ok(n) => n,
            Err(e) => return Reply::json(400, e.body()),
        };
        if ws.delivery_mode == DeliveryMode::Poll {
            if msg.log {
                self.log_poll(&ws, &msg.caller, &normalized).await;
            }
            return Reply::poll_queued(&normalized.method, &normalized.body);
        }
        match self.queue_ahead(&ws).await {
            Ahead::Busy => return self.enqueue(&ws, &msg.caller, &normalized, false).await,
            Ahead::Waiting => return self.enqueue(&ws, &msg.caller, &normalized, true).await,
            Ahead::Free => {}
        }
        let deadline = msg.timeout.or(match msg.caller {
            Caller::User => None,
            _ => Some(self.inner.settings.agent_ceiling),
        });
        let delivery = self
            .deliver(&ws, &msg.caller, &normalized, deadline, msg.log)
            .await;
        match delivery.verdict {
            crate::delivery::Verdict::NotTaken => {
                self.enqueue(&ws, &msg.caller, &normalized, false).await
            }
            _ => delivery.reply,
        }
    }

    /// Whether a message to `ws` must wait in its queue: the agent reported no free task slot,
    /// or messages are already waiting (they go first).
    async fn queue_ahead(&self, ws: &Workspace) -> Ahead {
        let live = matches!(
            ws.status,
            WorkspaceStatus::Online | WorkspaceStatus::Degraded
        );
        if live && ws.active_tasks >= ws.max_concurrent_tasks.max(1) {
            return Ahead::Busy;
        }
        match self.inner.store.queue().depth(ws.id).await {
            Ok(0) => Ahead::Free,
            Ok(_) => Ahead::Waiting,
            Err(e) => {
                tracing::warn!(workspace = %ws.id, error = %e, "a2a: queue depth unknown");
                Ahead::Free
            }
        }
    }

    async fn log_poll(&self, ws: &Workspace, caller: &Caller, normalized: &Normalized) {
        let new = NewActivity {
            summary: Some(format!(
                "{} → {} (queued for poll)",
                normalized.method,
                display_name(ws)
            )),
            request_body: Some(normalized.body.clone()),
            ..receive_row(ws, caller, normalized)
        };
        log::record_quietly(&self.inner.store, self.inner.platform.as_ref(), &new).await;
    }
}

enum Ahead {
    Free,
    Busy,
    Waiting,
}

fn denied() -> Reply {
    Reply::error(
        403,
        "access denied: workspaces cannot communicate per hierarchy rules",
    )
}

/// The name used in summaries: the workspace name, else its id.
pub(crate) fn display_name(ws: &Workspace) -> String {
    if ws.name.is_empty() {
        ws.id.to_string()
    } else {
        ws.name.clone()
    }
}

/// The common fields of an `a2a_receive` row on the target.
pub(crate) fn receive_row(ws: &Workspace, caller: &Caller, normalized: &Normalized) -> NewActivity {
    NewActivity {
        workspace_id: ws.id,
        activity_type: "a2a_receive".into(),
        source_id: caller.workspace(),
        caller: caller.system().map(str::to_owned),
        target_id: Some(ws.id),
        method: Some(normalized.method.clone()).filter(|m| !m.is_empty()),
        summary: None,
        request_body: None,
        response_body: None,
        tool_trace: None,
        duration_ms: None,
        status: "ok".into(),
        error_detail: None,
        idempotency_key: None,
    }
}

/// `{"error": …}` for an unexpected internal failure.
pub(crate) fn internal(message: &str) -> Reply {
    Reply::json(500, json!({ "error": message }))
}
