//! The global HTTP layers (spec: auth-router §1.1), applied by [`crate::app::with_pipeline`].

pub mod body_limit;
pub mod body_timeout;
pub mod cors;
pub mod metrics;
pub mod rate_limit;
pub mod security_headers;
