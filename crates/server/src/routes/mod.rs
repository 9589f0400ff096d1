//! HTTP handlers, one module per area of the API.

pub(crate) mod events;
pub(crate) mod system;
