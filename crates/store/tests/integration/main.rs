//! The integration tests of `molecule-store`, in one test binary: the store conformance suite,
//! every test on SQLite and PostgreSQL (`<module>::<test>::sqlite` and `::postgres`). Each
//! module is one repository area and says at its top what it covers.
//!
//! A new area is a new module here, not a new `tests/*.rs` file (cargo would build that as
//! another binary).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

mod activity;
mod cache;
mod channels;
mod database;
mod hierarchy;
mod memories;
mod queue;
mod schedules;
mod secrets;
mod status;
mod tokens;
mod workspaces;
