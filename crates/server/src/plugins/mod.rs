//! Plugins (spec templates §1.5): sources (`local://`, `github://`), the staging pipeline
//! with its supply-chain checks, safe archive handling, manifests, and the `CLAUDE.md` block
//! stripping of an uninstall. A staged plugin lives in memory (path → bytes): there is no
//! staging directory to leave behind.

pub mod archive;
pub mod claude_md;
pub mod github;
pub mod manifest;
pub mod source;
pub mod stage;

use std::collections::BTreeMap;

/// A plugin's files by path relative to its root (`/`-separated, guarded).
pub type Files = BTreeMap<String, Vec<u8>>;
