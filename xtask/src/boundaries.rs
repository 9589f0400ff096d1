//! The crate-boundary check: the dependency direction is the architecture.
//!
//! Every dependency a workspace crate declares (normal, build or dev) is compared with the one
//! table below. An edge the table does not allow fails the check, naming the edge and the rule.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
use cargo_metadata::{DependencyKind, Metadata, MetadataCommand};

/// The layers: each workspace crate and the workspace crates it may depend on.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("molecule-domain", &[]),
    ("molecule-provisioner-api", &["molecule-domain"]),
    ("molecule-store", &["molecule-domain"]),
    ("molecule-a2a", &["molecule-domain", "molecule-store"]),
    (
        "molecule-server",
        &[
            "molecule-domain",
            "molecule-provisioner-api",
            "molecule-store",
            "molecule-a2a",
        ],
    ),
    ("molecule-testkit", &[]),
    ("molecule-echo-agent", &["molecule-domain"]),
    ("xtask", &["molecule-testkit"]),
];

/// Crates for tests only: any crate may use them as a dev-dependency, or as an optional
/// dependency (behind a `testing` feature); a plain dependency only where the layer table
/// lists it (xtask, which starts the test databases).
pub const TEST_ONLY: &[&str] = &["molecule-testkit"];

/// Third-party crates that must stay in their layer. A name ending in `-` is a prefix.
pub const CONFINED: &[(&str, &[&str])] = &[
    ("axum", &["molecule-server"]),
    ("tower-http", &["molecule-server"]),
    ("prometheus-client", &["molecule-server"]),
    ("sqlx", &["molecule-store"]),
    ("bollard", &["molecule-provisioner-api"]),
    ("aws-sdk-", &["molecule-provisioner-api"]),
    ("aws-config", &["molecule-provisioner-api"]),
];

/// `cargo xtask boundaries`: checks this workspace.
pub fn run() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let metadata = metadata(&root.join("Cargo.toml"))?;
    let violations = check(&metadata);
    if violations.is_empty() {
        println!("crate boundaries: ok");
        return Ok(());
    }
    for v in &violations {
        eprintln!("boundary violation: {v}");
    }
    bail!("{} crate-boundary violation(s)", violations.len())
}

/// The declared dependencies of the workspace at `manifest` (no resolution, no network).
pub fn metadata(manifest: &Path) -> anyhow::Result<Metadata> {
    MetadataCommand::new()
        .manifest_path(manifest)
        .no_deps()
        .exec()
        .context("cargo metadata failed")
}

/// Every edge of the workspace that the tables refuse, as a sentence naming edge and rule.
pub fn check(metadata: &Metadata) -> Vec<String> {
    let members: BTreeSet<&str> = metadata
        .workspace_packages()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let mut violations = Vec::new();
    for package in metadata.workspace_packages() {
        let from = package.name.as_str();
        let Some(allowed) = layer_of(from) else {
            violations.push(format!(
                "{from} is not in the layer table of xtask/src/boundaries.rs: add it there"
            ));
            continue;
        };
        for dep in &package.dependencies {
            let to = dep.name.as_str();
            let kind = kind_name(dep.kind);
            if to == from {
                continue; // a crate's tests enabling its own features
            }
            if members.contains(to) {
                if allowed.contains(&to) {
                    continue;
                }
                if TEST_ONLY.contains(&to) {
                    if dep.kind != DependencyKind::Development && !dep.optional {
                        violations.push(format!(
                            "{from} -> {to} ({kind}): {to} is for tests only; use it as a \
                             dev-dependency or an optional `testing` feature"
                        ));
                    }
                } else {
                    violations.push(format!(
                        "{from} -> {to} ({kind}): {from} may depend only on [{}]",
                        allowed.join(", ")
                    ));
                }
            } else if let Some((_, homes)) = CONFINED.iter().find(|(name, _)| matches(name, to))
                && !homes.contains(&from)
            {
                violations.push(format!(
                    "{from} -> {to} ({kind}): {to} is confined to [{}]",
                    homes.join(", ")
                ));
            }
        }
    }
    violations
}

fn layer_of(name: &str) -> Option<&'static [&'static str]> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

fn matches(rule: &str, name: &str) -> bool {
    match rule.strip_suffix('-') {
        Some(prefix) => name.starts_with(rule) || name == prefix,
        None => name == rule,
    }
}

fn kind_name(kind: DependencyKind) -> &'static str {
    match kind {
        DependencyKind::Development => "dev-dependency",
        DependencyKind::Build => "build-dependency",
        _ => "dependency",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a workspace with one crate per `(name, extra [dependencies] lines)`.
    fn workspace(crates: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<String> = crates.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            format!(
                "[workspace]\nresolver = \"2\"\nmembers = [{}]\n",
                members.join(", ")
            ),
        )
        .unwrap();
        for (name, deps) in crates {
            let src = dir.path().join(name).join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("lib.rs"), "").unwrap();
            std::fs::write(
                dir.path().join(name).join("Cargo.toml"),
                format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                     [dependencies]\n{deps}\n"
                ),
            )
            .unwrap();
        }
        dir
    }

    fn violations(crates: &[(&str, &str)]) -> Vec<String> {
        let dir = workspace(crates);
        check(&metadata(&dir.path().join("Cargo.toml")).unwrap())
    }

    #[test]
    fn this_workspace_keeps_its_boundaries() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let found = check(&metadata(&root.join("Cargo.toml")).unwrap());
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn a_planted_upward_edge_is_caught_and_named() {
        let found = violations(&[
            (
                "molecule-domain",
                "molecule-store = { path = \"../molecule-store\" }",
            ),
            (
                "molecule-store",
                "molecule-domain = { path = \"../molecule-domain\" }",
            ),
        ]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("molecule-domain -> molecule-store (dependency)"),
            "{}",
            found[0]
        );
        assert!(found[0].contains("may depend only on []"), "{}", found[0]);
    }

    #[test]
    fn a_confined_crate_outside_its_layer_is_caught_and_named() {
        let found = violations(&[
            ("molecule-server", "sqlx = \"0.8\"\naws-sdk-ec2 = \"1\""),
            ("molecule-store", "sqlx = \"0.8\""),
        ]);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found.iter().any(|v| v
                == "molecule-server -> sqlx (dependency): sqlx is confined to [molecule-store]")
        );
        assert!(
            found
                .iter()
                .any(|v| v.starts_with("molecule-server -> aws-sdk-ec2"))
        );
    }

    #[test]
    fn test_only_crates_must_stay_in_tests() {
        let found = violations(&[
            (
                "molecule-store",
                "molecule-testkit = { path = \"../molecule-testkit\" }",
            ),
            (
                "molecule-a2a",
                "molecule-testkit = { path = \"../molecule-testkit\", optional = true }",
            ),
            ("molecule-testkit", ""),
        ]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("molecule-store -> molecule-testkit"));
    }

    #[test]
    fn an_unlisted_crate_is_reported() {
        let found = violations(&[("molecule-mystery", "")]);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("molecule-mystery is not in the layer table"));
    }
}
