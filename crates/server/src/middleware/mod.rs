//! The global HTTP layers (spec: auth-router §1.1), applied by [`crate::app::with_pipeline`],
//! with their [`HttpSettings`]. Each layer takes only the part of the state it needs.

pub mod body_limit;
pub mod body_timeout;
pub mod cors;
pub mod metrics;
pub mod rate_limit;
pub mod security_headers;
mod settings;
pub mod tenant_guard;
pub mod trace;

pub use settings::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, HttpSettings, ROUTE_BODY_LIMITS,
};
