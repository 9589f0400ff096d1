//! Names of the Docker resources of a workspace (spec provisioner §1.5.1), as pure functions so
//! that the server, sweepers and other tools agree with the backend without a daemon.

use molecule_domain::WorkspaceId;

/// The label on every container and volume the platform creates: `molecule.platform.managed`.
pub const MANAGED_LABEL: &str = "molecule.platform.managed";

/// The label carrying the full workspace id (spec §2.3.23), so that a sweeper never has to
/// work from a 12-character prefix.
pub const WORKSPACE_LABEL: &str = "molecule.workspace.id";

/// The port the agent listens on inside its container.
pub const AGENT_PORT: u16 = 8000;

/// The container of a workspace: `ws-<first 12 characters of the id>`.
pub fn container_name(id: WorkspaceId) -> String {
    format!("ws-{}", id.short())
}

/// The config volume, mounted at `/configs`: `ws-<id12>-configs`.
pub fn config_volume_name(id: WorkspaceId) -> String {
    format!("{}-configs", container_name(id))
}

/// The Claude session volume (runtime `claude-code` only): `ws-<id12>-claude-sessions`.
pub fn claude_sessions_volume_name(id: WorkspaceId) -> String {
    format!("{}-claude-sessions", container_name(id))
}

/// The agent's URL on the Docker network: `http://ws-<id12>:8000`.
pub fn internal_url(id: WorkspaceId) -> String {
    format!("http://{}:{AGENT_PORT}", container_name(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> WorkspaceId {
        WorkspaceId::from_uuid(
            "6f9619ff-8b86-d011-b42d-00c04fc964ff"
                .parse()
                .unwrap_or_default(),
        )
    }

    #[test]
    fn names_follow_the_reference() {
        assert_eq!(container_name(id()), "ws-6f9619ff-8b8");
        assert_eq!(config_volume_name(id()), "ws-6f9619ff-8b8-configs");
        assert_eq!(
            claude_sessions_volume_name(id()),
            "ws-6f9619ff-8b8-claude-sessions"
        );
        assert_ne!(config_volume_name(id()), claude_sessions_volume_name(id()));
        assert_eq!(internal_url(id()), "http://ws-6f9619ff-8b8:8000");
    }
}
