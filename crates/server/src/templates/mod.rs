//! Workspace templates (spec templates §1.1): the catalogue `GET /templates` lists from the
//! configs directory, and `POST /templates/import`, which checks a whole upload, then writes
//! it into a hidden staging directory and renames that into place, so a failure leaves
//! nothing behind.

pub(crate) mod catalog;
pub(crate) mod generated;
pub(crate) mod import;
pub(crate) mod restart;
pub(crate) mod source;
