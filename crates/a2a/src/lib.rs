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

mod caller;
mod delegation;
mod delegation_rows;
mod delivery;
mod dispatch;
mod drain;
pub mod fetch;
pub mod forward;
pub mod log;
pub mod normalize;
mod platform;
mod proxy;
pub mod queue;
pub mod reply;
mod send;
mod settings;
mod shared;
pub mod ssrf;
mod target;
mod usage;

pub use caller::Caller;
pub use platform::Platform;
pub use proxy::Proxy;
pub use reply::{Body, Reply};
pub use send::Message;
pub use settings::Settings;
pub use shared::Overrides;
