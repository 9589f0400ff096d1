//! How A2A messages reach a workspace.

use crate::wire::wire_enum;

wire_enum! {
    /// Whether the platform pushes A2A messages to the agent's URL or the agent polls for them.
    pub enum DeliveryMode ("delivery mode") {
        /// The platform calls the agent's A2A endpoint.
        Push => "push",
        /// The agent reads its messages from the activity feed.
        Poll => "poll",
    }
}

// `wire_enum!` fixes the derive list, so the default is written out.
#[allow(clippy::derivable_impls)]
impl Default for DeliveryMode {
    fn default() -> Self {
        DeliveryMode::Push
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings() {
        assert_eq!("push".parse::<DeliveryMode>(), Ok(DeliveryMode::Push));
        assert_eq!("poll".parse::<DeliveryMode>(), Ok(DeliveryMode::Poll));
        assert!("Poll".parse::<DeliveryMode>().is_err());
        assert_eq!(DeliveryMode::default(), DeliveryMode::Push);
    }
}
