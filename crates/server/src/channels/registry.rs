//! The static registry of adapters, one per chat platform.

use super::adapter::Adapter;
use super::{discord, lark, slack, telegram};

/// Every adapter, sorted by display name.
pub static ADAPTERS: [&dyn Adapter; 4] = [
    &discord::Discord,
    &lark::Lark,
    &slack::Slack,
    &telegram::Telegram,
];

/// The adapter of a channel type.
pub fn adapter(channel_type: &str) -> Option<&'static dyn Adapter> {
    ADAPTERS
        .iter()
        .copied()
        .find(|a| a.channel_type() == channel_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_sorted_by_display_name() {
        let names: Vec<_> = ADAPTERS.iter().map(|a| a.display_name()).collect();
        assert_eq!(names, ["Discord", "Lark / Feishu", "Slack", "Telegram"]);
        assert!(adapter("telegram").is_some());
        assert!(adapter("irc").is_none());
    }
}
