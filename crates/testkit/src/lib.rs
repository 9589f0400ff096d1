//! Test support shared by the crates' tests and `cargo xtask ci`.
//!
//! Only ever a dev-dependency (the boundary check enforces it). Its main items are
//! [`PgCluster`], a throwaway PostgreSQL cluster built from the machine's server binaries, and
//! [`MotoServer`], a throwaway local AWS API (`moto_server`) for the EC2 backend's tests.

mod moto;
mod pg;

pub use moto::{MotoError, MotoServer};
pub use pg::{PgCluster, PgError};

/// Whether this run is CI (`CI=true`), where a missing test dependency is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
