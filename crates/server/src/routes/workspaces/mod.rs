//! Workspace CRUD and operator operations (`lifecycle.md` §6).

mod budget;
mod create;
mod external;
mod ops;
mod read;
mod update;

pub(crate) use budget::{budget, set_budget};
pub(crate) use create::{create, parse_create};
pub(crate) use external::{connection_info as external_connection, rotate as rotate_external};
pub(crate) use ops::{bootstrap_failed, console, hibernate, pause, remove, restart, resume};
pub(crate) use read::{get, list, status};
pub(crate) use update::update;
