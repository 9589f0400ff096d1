//! HTTP handlers, one module per area of the API.

pub(crate) mod system;
