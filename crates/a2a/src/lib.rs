//! Agent-to-agent traffic: the A2A proxy pipeline, the message queue and delegations.
//!
//! Built on `molecule-domain` and `molecule-store`; the server passes in the rest through the
//! [`Platform`] trait (events, liveness probe, restart, wake). The proxy never sees an HTTP
//! framework: it takes a [`Message`] and answers a [`Reply`].
//!
//! [`Proxy`] is the façade; the modules below it depend on each other in one direction only:
//! `proxy` → `delegation` → `send` → `queue` → `drain` → (`delivery`, `delegation_rows`) →
//! `shared` and the leaves (`target`, `settings`, `log`, `reply`, `dispatch`, `normalize`,
//! `ssrf`, `usage`, `caller`, `platform`).

pub mod caller;
pub mod delegation;
pub mod delegation_rows;
pub mod delivery;
pub mod dispatch;
pub mod drain;
pub mod fetch;
pub mod log;
pub mod normalize;
pub mod platform;
pub mod proxy;
pub mod queue;
pub mod reply;
pub mod send;
pub mod settings;
pub mod shared;
pub mod ssrf;
pub mod target;
pub mod usage;

pub use caller::Caller;
pub use platform::Platform;
pub use proxy::Proxy;
pub use reply::{Body, Reply};
pub use send::Message;
pub use settings::Settings;
