//! The workspace model of molecule-rs.
//!
//! This crate is the bottom layer: plain types and rules that every other crate shares, with no
//! I/O. It holds workspace ids, the ten statuses and the table of allowed transitions between
//! them, runtimes, tiers, delivery modes, workspace access modes and the field validation rules
//! of the HTTP API.

mod access;
mod delivery;
mod event;
mod id;
pub mod memory;
pub mod paths;
mod runtime;
mod status;
mod tier;
pub mod validation;
mod wire;

pub use access::WorkspaceAccess;
pub use delivery::DeliveryMode;
pub use event::EventType;
pub use id::{InvalidId, WorkspaceId};
pub use memory::{InstructionScope, MemoryError, MemoryScope};
pub use paths::{FileRoot, PathError, RelPath};
pub use runtime::{InvalidRuntime, Runtime};
pub use status::{IllegalTransition, WorkspaceStatus};
pub use tier::{InvalidTier, Tier};
pub use wire::{UnknownValue, WireEnum};
