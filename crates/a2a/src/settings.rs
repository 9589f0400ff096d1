//! The proxy's settings (a2a.md §1.10), and what they mean for one target or caller.

use std::time::Duration;

use molecule_domain::Runtime;
use molecule_store::Workspace;

use crate::caller::Caller;
use crate::ssrf::UrlPolicy;

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

impl Settings {
    /// The most a delivery for `caller` may take: none for the user, the agent ceiling for
    /// anyone else.
    pub(crate) fn ceiling_for(&self, caller: &Caller) -> Option<Duration> {
        match caller {
            Caller::User => None,
            _ => Some(self.agent_ceiling),
        }
    }

    /// The address policy for a target: a loopback URL on a workspace the platform runs
    /// itself was published by its own provisioner (registration never accepts loopback
    /// outside dev mode), so it is allowed.
    pub(crate) fn policy_for(&self, ws: &Workspace, url: &str) -> UrlPolicy {
        let mut policy = self.policy;
        if ws.runtime != Runtime::EXTERNAL && url.starts_with("http://127.0.0.1:") {
            policy.dev_mode = true;
        }
        policy
    }
}
