//! One lifecycle service owns every start and stop (Decision 5): in the server and A2A crates,
//! only `lifecycle/` and the files that hand the chosen backend to it name the `Provisioner`
//! trait, and only `lifecycle/` calls its operations. A check over the source text, so that a
//! new caller of the backend fails here rather than in review.
//!
//! The rules are the tables below: edit them when the hand-over moves.

use std::path::Path;

use anyhow::bail;

use super::{Problem, read, relative, rust_files};

/// The source folders checked, relative to the workspace root.
pub const SCOPE: &[&str] = &["crates/server/src", "crates/a2a/src"];

/// The lifecycle service: the one owner, which may name the trait and call its operations.
pub const OWNER: &str = "crates/server/src/lifecycle/";

/// The files that choose the backend and hand it to the lifecycle service: they may name the
/// trait, but not call its operations.
pub const HANDS_IT_OVER: &[&str] = &["crates/server/src/backend.rs", "crates/server/src/state.rs"];

/// The trait's operations, as method calls.
pub const OPERATIONS: &[&str] = &[
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

/// Fewer files than this in [`SCOPE`] means the check is looking in the wrong place.
const MIN_FILES: usize = 20;
/// Fewer backend calls than this in [`OWNER`] means the check no longer sees them.
const MIN_OWNER_CALLS: usize = 5;

/// The findings over this workspace.
pub fn check(root: &Path) -> anyhow::Result<Vec<Problem>> {
    let mut files = Vec::new();
    for dir in SCOPE {
        for path in rust_files(&root.join(dir), &[])? {
            files.push((relative(root, &path), read(&path)?));
        }
    }
    if files.len() < MIN_FILES {
        bail!(
            "only {} source files found under {SCOPE:?}: update SCOPE in xtask/src/tidy/backend.rs",
            files.len()
        );
    }
    let (problems, owner_calls) = check_files(&files);
    if owner_calls < MIN_OWNER_CALLS {
        bail!(
            "the check sees only {owner_calls} backend call(s) in {OWNER}: update OWNER or \
             OPERATIONS in xtask/src/tidy/backend.rs"
        );
    }
    Ok(problems)
}

/// The findings over `(path, text)` pairs, and how many operations the owner calls (each
/// operation counted once per file).
pub fn check_files(files: &[(String, String)]) -> (Vec<Problem>, usize) {
    let mut problems = Vec::new();
    let mut owner_calls = 0;
    for (file, text) in files {
        let is_owner = file.starts_with(OWNER);
        let hands_it_over = HANDS_IT_OVER.contains(&file.as_str());
        let mut called = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if !is_owner && !hands_it_over && names_the_trait(line) {
                problems.push(Problem {
                    file: file.clone(),
                    line: n + 1,
                    message: format!(
                        "names the `Provisioner` trait: only the lifecycle service ({OWNER}) \
                         may hold the backend; go through it, or, if this file now hands the \
                         backend to it, add the file to HANDS_IT_OVER in \
                         xtask/src/tidy/backend.rs"
                    ),
                });
            }
            let ops: Vec<&str> = OPERATIONS
                .iter()
                .copied()
                .filter(|op| line.contains("backend") && line.contains(op))
                .collect();
            if ops.is_empty() {
                continue;
            }
            if is_owner {
                for op in ops {
                    if !called.contains(&op) {
                        called.push(op);
                    }
                }
            } else {
                problems.push(Problem {
                    file: file.clone(),
                    line: n + 1,
                    message: format!(
                        "calls the backend's {ops:?}: only the lifecycle service ({OWNER}) \
                         calls the backend; call the lifecycle service instead"
                    ),
                });
            }
        }
        owner_calls += called.len();
    }
    (problems, owner_calls)
}

/// Whether `text` names the trait `Provisioner` (not `DockerProvisioner` and the like).
pub fn names_the_trait(text: &str) -> bool {
    text.match_indices("Provisioner").any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + "Provisioner".len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
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

    #[test]
    fn only_the_owner_calls_and_only_the_hand_over_names() {
        let (problems, owner_calls) = check_files(&files(&[
            (
                "crates/server/src/lifecycle/mod.rs",
                "use x::Provisioner;\nself.backend.start(&req);\nself.backend.running(id)",
            ),
            (
                "crates/server/src/state.rs",
                "backend: Arc<dyn Provisioner>,",
            ),
            (
                "crates/server/src/backend.rs",
                "fn f() {}\nlet _ = backend.stop(id, None);",
            ),
            (
                "crates/server/src/routes/x.rs",
                "fn f() {}\nfn g(p: &dyn Provisioner) {}",
            ),
        ]));
        assert_eq!(owner_calls, 2);
        let found: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("crates/server/src/backend.rs:2: calls the backend's"));
        assert!(found[1].starts_with("crates/server/src/routes/x.rs:2: names the `Provisioner`"));
    }

    #[test]
    fn this_workspace_has_one_owner_of_the_backend() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let found = check(root).unwrap();
        assert!(found.is_empty(), "{found:#?}");
    }
}
