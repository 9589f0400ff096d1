//! The integration tests of `molecule-server`, in one test binary: the server and everything
//! it depends on are linked once, not once per test file. Each module is one area of the
//! server and says at its top what it covers; [`common`] is the harness they share.
//!
//! A new area is a new module here, not a new `tests/*.rs` file (cargo would build that as
//! another binary, linking the server again).
//!
//! nextest runs every test in a process of its own, so the tests that set process-wide state
//! (`secrets::logs`'s tracing subscriber) still do not meet.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

mod a2a;
mod activity;
mod auth_matrix;
mod binary;
mod channels;
mod chat_files;
mod deploy;
mod discovery;
mod docker_e2e;
mod docker_unreachable;
mod ec2_lifecycle;
mod edge;
mod events;
mod files;
mod github_token;
mod http_limits;
mod mcp;
mod memories;
mod observability;
mod openapi;
mod org;
mod pipeline;
mod schedules;
mod secrets;
mod telemetry;
mod templates;
mod workspaces;
