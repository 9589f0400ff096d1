//! One lifecycle service owns every start and stop (Decision 5): in the server and A2A crates,
//! only `lifecycle/` and the files that hand the chosen backend to it (`backend.rs`, `state.rs`)
//! name the `Provisioner` trait, and only `lifecycle/` calls its operations. A grep over the
//! sources, so that a new caller of the backend fails here rather than in review.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

/// The trait's operations, as method calls.
const OPERATIONS: &[&str] = &[
    ".start(&",
    ".stop(ws",
    ".stop(id",
    ".running(",
    ".remove_volume(",
    ".write_auth_token(",
    ".read_file(",
    ".managed_workspaces(",
    ".console_output(",
    ".refresh_images(",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `text` names the trait `Provisioner` (not `DockerProvisioner` and the like).
fn names_the_trait(text: &str) -> bool {
    text.match_indices("Provisioner").any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + "Provisioner".len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn only_the_lifecycle_reaches_the_backend() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR"));
    let roots = [server.join("src"), server.join("../a2a/src")];
    let mut files = Vec::new();
    for root in &roots {
        sources(root, &mut files);
    }
    assert!(files.len() > 20, "the sources were found: {files:?}");
    let mut lifecycle_calls = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file
            .strip_prefix(server)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let in_lifecycle = rel.starts_with("src/lifecycle/");
        let hands_it_over = rel == "src/backend.rs" || rel == "src/state.rs";
        if names_the_trait(&text) {
            assert!(
                in_lifecycle || hands_it_over,
                "{rel} names the Provisioner trait: only the lifecycle service may hold the backend"
            );
        }
        let backend_calls: Vec<&str> = OPERATIONS
            .iter()
            .copied()
            .filter(|op| {
                text.lines()
                    .any(|l| l.contains("backend") && l.contains(op))
            })
            .collect();
        if in_lifecycle {
            lifecycle_calls += backend_calls.len();
        } else {
            assert!(
                backend_calls.is_empty(),
                "{rel} calls the backend's {backend_calls:?}: go through the lifecycle service"
            );
        }
    }
    assert!(
        lifecycle_calls >= 5,
        "the check sees the lifecycle's own calls"
    );
}

#[test]
fn the_trait_name_check_is_exact() {
    assert!(names_the_trait("Arc<dyn Provisioner>"));
    assert!(names_the_trait(
        "use molecule_provisioner_api::Provisioner;"
    ));
    assert!(!names_the_trait("DockerProvisioner::connect"));
    assert!(!names_the_trait("ProvisionerKind"));
}
