//! The catalogue of events the platform emits, with their exact wire names.

use crate::wire::wire_enum;

wire_enum! {
    /// The type of an event, as sent in the `event` field of the envelope.
    pub enum EventType ("event type") {
        /// A workspace is being provisioned.
        WorkspaceProvisioning => "WORKSPACE_PROVISIONING",
        /// Provisioning failed.
        WorkspaceProvisionFailed => "WORKSPACE_PROVISION_FAILED",
        /// A step of provisioning (`{step, status}`: image, volume, container, registration;
        /// started, done, failed) was reached.
        WorkspaceProvisionProgress => "WORKSPACE_PROVISION_PROGRESS",
        /// A workspace came online.
        WorkspaceOnline => "WORKSPACE_ONLINE",
        /// An external workspace waits for its agent.
        WorkspaceAwaitingAgent => "WORKSPACE_AWAITING_AGENT",
        /// A workspace went offline.
        WorkspaceOffline => "WORKSPACE_OFFLINE",
        /// A workspace is degraded.
        WorkspaceDegraded => "WORKSPACE_DEGRADED",
        /// A workspace was removed.
        WorkspaceRemoved => "WORKSPACE_REMOVED",
        /// A workspace was paused.
        WorkspacePaused => "WORKSPACE_PAUSED",
        /// A workspace was hibernated.
        WorkspaceHibernated => "WORKSPACE_HIBERNATED",
        /// A team was expanded.
        WorkspaceExpanded => "WORKSPACE_EXPANDED",
        /// A team was collapsed.
        WorkspaceCollapsed => "WORKSPACE_COLLAPSED",
        /// An agent card changed.
        AgentCardUpdated => "AGENT_CARD_UPDATED",
        /// An agent was assigned.
        AgentAssigned => "AGENT_ASSIGNED",
        /// An agent was replaced.
        AgentReplaced => "AGENT_REPLACED",
        /// An agent was removed.
        AgentRemoved => "AGENT_REMOVED",
        /// An agent was moved.
        AgentMoved => "AGENT_MOVED",
        /// An approval was requested.
        ApprovalRequested => "APPROVAL_REQUESTED",
        /// An approval was escalated to the parent.
        ApprovalEscalated => "APPROVAL_ESCALATED",
        /// An approval was approved.
        ApprovalApproved => "APPROVAL_APPROVED",
        /// An approval was denied.
        ApprovalDenied => "APPROVAL_DENIED",
        /// A delegation was sent.
        DelegationSent => "DELEGATION_SENT",
        /// A delegation changed status.
        DelegationStatus => "DELEGATION_STATUS",
        /// A delegation completed.
        DelegationComplete => "DELEGATION_COMPLETE",
        /// A delegation failed.
        DelegationFailed => "DELEGATION_FAILED",
        /// A chat channel message.
        ChannelMessage => "CHANNEL_MESSAGE",
        /// A schedule ran.
        CronExecuted => "CRON_EXECUTED",
        /// A schedule was skipped.
        CronSkipped => "CRON_SKIPPED",
        /// An activity row was written (broadcast only).
        ActivityLogged => "ACTIVITY_LOGGED",
        /// An agent pushed a message to the user (broadcast only).
        AgentMessage => "AGENT_MESSAGE",
        /// A canvas A2A call returned (broadcast only).
        A2aResponse => "A2A_RESPONSE",
        /// The agent's current task changed (broadcast only).
        TaskUpdated => "TASK_UPDATED",
        /// A heartbeat arrived (broadcast only).
        WorkspaceHeartbeat => "WORKSPACE_HEARTBEAT",
    }
}

impl EventType {
    /// Whether events of this type are persisted in `structure_events` (record-and-broadcast)
    /// rather than only broadcast.
    pub const fn is_recorded(self) -> bool {
        !matches!(
            self,
            EventType::ActivityLogged
                | EventType::AgentMessage
                | EventType::A2aResponse
                | EventType::TaskUpdated
                | EventType::WorkspaceHeartbeat
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ephemeral_ones_are_not_recorded() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), *t);
            assert!(
                t.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
            );
        }
        assert!(EventType::WorkspaceOnline.is_recorded());
        assert!(!EventType::WorkspaceHeartbeat.is_recorded());
        assert_eq!(EventType::A2aResponse.as_str(), "A2A_RESPONSE");
    }
}
