//! How a workspace may reach its host directory.

use crate::wire::wire_enum;

wire_enum! {
    /// The access mode of a workspace's bind-mounted host directory.
    pub enum WorkspaceAccess ("workspace access") {
        /// No host directory is mounted.
        None => "none",
        /// Mounted read-only.
        ReadOnly => "read_only",
        /// Mounted read-write.
        ReadWrite => "read_write",
    }
}

// `wire_enum!` fixes the derive list, so the default is written out.
#[allow(clippy::derivable_impls)]
impl Default for WorkspaceAccess {
    fn default() -> Self {
        WorkspaceAccess::None
    }
}

impl WorkspaceAccess {
    /// Whether this mode needs a `workspace_dir`.
    pub const fn needs_directory(self) -> bool {
        !matches!(self, WorkspaceAccess::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings() {
        assert_eq!(
            "read_only".parse::<WorkspaceAccess>(),
            Ok(WorkspaceAccess::ReadOnly)
        );
        assert!("readonly".parse::<WorkspaceAccess>().is_err());
        assert!(WorkspaceAccess::ReadWrite.needs_directory());
        assert!(!WorkspaceAccess::default().needs_directory());
    }
}
