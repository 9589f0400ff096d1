//! HTTP handlers, one module per area of the API.

pub(crate) mod a2a;
pub(crate) mod activity;
pub(crate) mod admin;
pub(crate) mod discovery;
pub(crate) mod events;
pub(crate) mod org_tokens;
pub(crate) mod registry;
pub(crate) mod secrets;
pub(crate) mod system;
pub(crate) mod team;
pub(crate) mod tokens;
pub(crate) mod workspaces;

mod body;
mod views;
