//! Workspace statuses and the table of allowed transitions between them.
//!
//! Every status write in the system is checked against [`WorkspaceStatus::can_transition_to`];
//! the store turns the same table into the guard of its compare-and-set update, so a transition
//! that the table refuses can never be written, whoever asks for it.

use crate::wire::wire_enum;

wire_enum! {
    /// The status of a workspace. The wire strings are a contract with the canvas UI and the
    /// PostgreSQL enum `workspace_status`.
    pub enum WorkspaceStatus ("workspace status") {
        /// The row exists and a backend launch is requested or under way; no agent yet.
        Provisioning => "provisioning",
        /// The agent registered and heartbeats; it accepts A2A traffic.
        Online => "online",
        /// Liveness was lost (heartbeats stopped, container gone).
        Offline => "offline",
        /// Alive but reporting errors, or wedged by its own report.
        Degraded => "degraded",
        /// Provisioning could not complete.
        Failed => "failed",
        /// Deleted. A tombstone: terminal, hidden from lists.
        Removed => "removed",
        /// Stopped by an operator; not restarted automatically.
        Paused => "paused",
        /// Stopped for idleness; the next A2A message wakes it.
        Hibernated => "hibernated",
        /// An external workspace with no live agent.
        AwaitingAgent => "awaiting_agent",
        /// Transient claim while the backend stop of a hibernation runs.
        Hibernating => "hibernating",
    }
}

/// A status change that the transition table does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a workspace cannot go from {from} to {to}")]
pub struct IllegalTransition {
    /// The current status.
    pub from: WorkspaceStatus,
    /// The status that was asked for.
    pub to: WorkspaceStatus,
}

impl WorkspaceStatus {
    /// Whether the transition table allows `self → to`.
    ///
    /// Self-loops are allowed only where an operation really repeats in place: a restart of a
    /// workspace that is still provisioning, and a re-register or heartbeat of a live agent.
    pub const fn can_transition_to(self, to: WorkspaceStatus) -> bool {
        use WorkspaceStatus::*;
        match self {
            // Terminal: a tombstone is never revived.
            Removed => false,
            Provisioning => matches!(
                to,
                Provisioning | Online | AwaitingAgent | Failed | Paused | Removed
            ),
            Online => matches!(
                to,
                Online
                    | Degraded
                    | Offline
                    | AwaitingAgent
                    | Paused
                    | Hibernating
                    | Provisioning
                    | Removed
            ),
            Degraded => matches!(
                to,
                Degraded
                    | Online
                    | Offline
                    | AwaitingAgent
                    | Paused
                    | Hibernating
                    | Provisioning
                    | Removed
            ),
            Offline => matches!(to, Online | Provisioning | Paused | Removed),
            // A restart, a pause, a delete, or its agent registering (it is alive after all:
            // Decision 2, spec lifecycle row 8).
            Failed => matches!(to, Provisioning | Online | Paused | Removed),
            AwaitingAgent => matches!(to, AwaitingAgent | Online | Paused | Removed),
            // Resume: a backend workspace is provisioned again, an external one waits for its agent.
            Paused => matches!(to, Provisioning | AwaitingAgent | Removed),
            // The stop finished, or it failed and the claim is given back.
            Hibernating => matches!(to, Hibernated | Online | Degraded | Failed | Removed),
            // Wake, pause or delete.
            Hibernated => matches!(to, Provisioning | Paused | Removed),
        }
    }

    /// Checks `self → to` against the table.
    pub const fn check_transition(self, to: WorkspaceStatus) -> Result<(), IllegalTransition> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// Every status from which `to` may be entered: the guard of a compare-and-set update.
    pub fn allowed_sources(to: WorkspaceStatus) -> Vec<WorkspaceStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(|from| from.can_transition_to(to))
            .collect()
    }

    /// Whether this status is the terminal tombstone.
    pub const fn is_removed(self) -> bool {
        matches!(self, WorkspaceStatus::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::WorkspaceStatus::*;
    use super::*;

    #[test]
    fn wire_strings_are_exact_and_round_trip() {
        let expected = [
            "provisioning",
            "online",
            "offline",
            "degraded",
            "failed",
            "removed",
            "paused",
            "hibernated",
            "awaiting_agent",
            "hibernating",
        ];
        let got: Vec<_> = WorkspaceStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(got, expected);
        for status in WorkspaceStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            let back: WorkspaceStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *status);
            assert_eq!(status.as_str().parse::<WorkspaceStatus>().unwrap(), *status);
        }
    }

    #[test]
    fn unknown_and_miscased_strings_are_errors() {
        for bad in [
            "",
            "Online",
            "ONLINE",
            "deleted",
            "awaiting-agent",
            " online",
        ] {
            assert!(bad.parse::<WorkspaceStatus>().is_err(), "{bad:?} parsed");
            assert!(serde_json::from_str::<WorkspaceStatus>(&format!("{bad:?}")).is_err());
        }
        assert!(serde_json::from_str::<WorkspaceStatus>("3").is_err());
    }

    #[test]
    fn removed_is_terminal() {
        for to in WorkspaceStatus::ALL {
            assert!(!Removed.can_transition_to(*to), "removed -> {to}");
        }
    }

    #[test]
    fn every_status_can_be_removed() {
        for from in WorkspaceStatus::ALL.iter().filter(|s| !s.is_removed()) {
            assert!(from.can_transition_to(Removed), "{from} -> removed");
        }
    }

    #[test]
    fn the_reference_defects_are_refused() {
        // restart or register cannot revive a tombstone; register does not revive paused or
        // hibernated; a sweep cannot flip a provisioning workspace offline.
        assert!(Removed.check_transition(Provisioning).is_err());
        assert!(Removed.check_transition(Failed).is_err());
        assert!(Paused.check_transition(Online).is_err());
        assert!(Hibernated.check_transition(Online).is_err());
        assert!(Provisioning.check_transition(Offline).is_err());
    }

    #[test]
    fn the_lifecycle_paths_are_allowed() {
        let paths: &[&[WorkspaceStatus]] = &[
            &[
                Provisioning,
                Online,
                Degraded,
                Online,
                Offline,
                Provisioning,
                Online,
            ],
            &[Provisioning, Failed, Provisioning, Online],
            &[Provisioning, Failed, Online],
            &[Provisioning, AwaitingAgent, Online, AwaitingAgent, Online],
            &[Online, Paused, Provisioning, Online],
            &[Online, Hibernating, Hibernated, Provisioning, Online],
            &[Online, Hibernating, Online],
            &[AwaitingAgent, Paused, AwaitingAgent],
        ];
        for path in paths {
            for pair in path.windows(2) {
                assert_eq!(pair[0].check_transition(pair[1]), Ok(()), "{path:?}");
            }
        }
    }

    #[test]
    fn allowed_sources_agree_with_the_table() {
        for to in WorkspaceStatus::ALL {
            let sources = WorkspaceStatus::allowed_sources(*to);
            for from in WorkspaceStatus::ALL {
                assert_eq!(sources.contains(from), from.can_transition_to(*to));
            }
        }
        assert_eq!(
            WorkspaceStatus::allowed_sources(Hibernated),
            vec![Hibernating]
        );
    }

    #[test]
    fn illegal_transition_names_both_ends() {
        let err = Removed.check_transition(Online).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a workspace cannot go from removed to online"
        );
    }
}
