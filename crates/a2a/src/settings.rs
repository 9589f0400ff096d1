//! The proxy's settings (a2a.md §1.10), and what they mean for one target or caller.

use std::time::Duration;

use molecule_domain::{Runtime, WorkspaceId};
use molecule_store::Workspace;

use crate::caller::Caller;
use crate::ssrf::UrlPolicy;

/// The prefix of an agent URL the Docker backend publishes on the host.
const LOOPBACK: &str = "http://127.0.0.1:";
/// The port agents listen on inside their container.
const DOCKER_AGENT_PORT: u16 = 8000;

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
    /// The platform runs inside Docker next to the workspaces its Docker backend starts
    /// (a2a.md §1.2.4 step 5): a published `http://127.0.0.1:<port>` is not this process's
    /// loopback, so such a URL is reached as `http://ws-<id12>:8000` on the shared network.
    pub docker_network_urls: bool,
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
            docker_network_urls: false,
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
        if Self::published(ws, url) {
            policy.dev_mode = true;
        }
        policy
    }

    /// Where to reach a target whose stored URL is `url`, and the address policy for it. With
    /// [`Settings::docker_network_urls`], a URL the platform's own provisioner published on
    /// loopback becomes `http://ws-<id12>:8000` (its path kept), which resolves to the
    /// container's address on the Docker network: a private address, allowed for it alone.
    pub(crate) fn target(&self, ws: &Workspace, url: &str) -> (String, UrlPolicy) {
        if self.docker_network_urls
            && Self::published(ws, url)
            && let Some(internal) = docker_network_url(ws.id, url)
        {
            let mut policy = self.policy;
            policy.saas = true;
            return (internal, policy);
        }
        (url.to_owned(), self.policy_for(ws, url))
    }

    fn published(ws: &Workspace, url: &str) -> bool {
        ws.runtime != Runtime::EXTERNAL && url.starts_with(LOOPBACK)
    }
}

/// `http://127.0.0.1:<port><path>` → `http://ws-<id12>:8000<path>`; `None` for any other URL.
fn docker_network_url(id: WorkspaceId, url: &str) -> Option<String> {
    let rest = url.strip_prefix(LOOPBACK)?;
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    Some(format!(
        "http://ws-{}:{DOCKER_AGENT_PORT}{path}",
        id.short()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_loopback_urls_become_container_names() {
        let id: WorkspaceId = "6f9619ff-8b86-d011-b42d-00cf4fc964ff".parse().unwrap();
        assert_eq!(
            docker_network_url(id, "http://127.0.0.1:32768").as_deref(),
            Some("http://ws-6f9619ff-8b8:8000")
        );
        assert_eq!(
            docker_network_url(id, "http://127.0.0.1:32768/a2a").as_deref(),
            Some("http://ws-6f9619ff-8b8:8000/a2a")
        );
        assert_eq!(docker_network_url(id, "http://10.0.0.2:8000"), None);
        assert_eq!(docker_network_url(id, "https://127.0.0.1:1"), None);
    }
}
