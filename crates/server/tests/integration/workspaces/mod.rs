//! The workspace, registry and token routes over real HTTP against the real router, on both
//! databases, with a recording Provisioner double ([`crate::common::FakeBackend`]) standing
//! in for a backend.

mod create;
mod external;
mod lifecycle;
mod progress;
mod registry;
mod routes;
mod teams;
