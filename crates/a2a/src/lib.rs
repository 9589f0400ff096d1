//! Agent-to-agent traffic: the A2A proxy pipeline, the message queue and delegations.
//!
//! Built on `molecule-domain` and `molecule-store`; the server passes in the rest through the
//! [`Platform`] trait (events, liveness probe, restart, wake). The proxy never sees an HTTP
//! framework: it takes a [`Message`] and answers a [`Reply`].

pub mod caller;
pub mod delegation;
pub mod delivery;
pub mod dispatch;
pub mod fetch;
pub mod log;
pub mod normalize;
pub mod platform;
pub mod proxy;
pub mod queue;
pub mod reply;
pub mod ssrf;
pub mod usage;

pub use caller::Caller;
pub use platform::Platform;
pub use proxy::{Message, Proxy, Settings};
pub use reply::{Body, Reply};
