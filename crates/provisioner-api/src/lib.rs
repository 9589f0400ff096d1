//! Starting, checking and stopping the compute a workspace runs on.
//!
//! This crate will hold the `Provisioner` trait and its backends (`docker`, `ec2`) behind
//! features. It depends only on `molecule-domain`, so other tools can use it without the server.
