//! A template's `config.yaml` as `POST /workspaces/:id/expand` reads it (serde_norway into the
//! team config, then the sub-workspace names and roles it would create): never panics; every
//! entry is either created or skipped; every created name and kept role passes the domain
//! validation. The workspace name → template folder mapping only yields `[a-z0-9_-]`, so it can
//! never leave the configs directory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_domain::validation;
use molecule_server::fuzzing::{team_config, template_folder};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = team_config(text) {
        assert_eq!(
            plan.children.len() + plan.skipped,
            plan.declared,
            "entries lost"
        );
        for (name, role) in &plan.children {
            assert!(validation::name(name).is_ok(), "invalid name {name:?}");
            if let Some(role) = role {
                assert!(validation::role(role).is_ok(), "invalid role {role:?}");
            }
        }
    }
    let folder = template_folder(text);
    assert!(
        folder
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
        "folder name {folder:?}"
    );
});
