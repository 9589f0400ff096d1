//! Who sends an A2A message.

use molecule_domain::WorkspaceId;

/// The prefixes of in-process system callers (webhooks, channels, the platform itself).
pub const SYSTEM_PREFIXES: [&str; 4] = ["webhook:", "system:", "test:", "channel:"];

/// The sender of one A2A message, as established by the server before the proxy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The user (canvas, the scheduler, an admin or org token): no hierarchy rules.
    User,
    /// A workspace, authenticated by its own token; a workspace may message itself.
    Workspace(WorkspaceId),
    /// An in-process system caller such as `webhook:github` or `channel:slack`; never from
    /// an HTTP header.
    System(String),
}

impl Caller {
    /// Whether `id` names a system caller (and so must never come from a request header).
    pub fn is_system_id(id: &str) -> bool {
        SYSTEM_PREFIXES.iter().any(|p| id.starts_with(p))
    }

    /// The caller's workspace, if it is one.
    pub fn workspace(&self) -> Option<WorkspaceId> {
        match self {
            Caller::Workspace(id) => Some(*id),
            _ => None,
        }
    }

    /// The system caller's name, if it is one.
    pub fn system(&self) -> Option<&str> {
        match self {
            Caller::System(s) => Some(s),
            _ => None,
        }
    }
}
