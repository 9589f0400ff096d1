//! HTTP handlers, one module per area of the API.

pub(crate) mod admin;
pub(crate) mod system;
