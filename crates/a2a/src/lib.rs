//! Agent-to-agent traffic: the A2A proxy pipeline, the message queue and delegations.
//!
//! Built on `molecule-domain` and `molecule-store`; the server passes in whatever else it needs.

pub mod normalize;
pub mod ssrf;
