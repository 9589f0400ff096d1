//! `POST /templates/import`: the checks of a whole upload before anything is written, and the
//! write itself into a hidden staging directory renamed into place at the end.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use molecule_domain::paths::{RelPath, normalize_name};

use super::generated;

/// The most files one import may carry.
pub(crate) const MAX_FILES: usize = 200;

/// Why an import was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    /// More than [`MAX_FILES`] files (the count).
    #[error("too many files ({0}), max {MAX_FILES}")]
    TooManyFiles(usize),
    /// A path failing the guard, two paths cleaning to the same file, or a file where another
    /// path needs a directory.
    #[error("invalid request body")]
    BadPath,
    /// The template directory exists already (its id).
    #[error("template already exists")]
    Exists(String),
    /// Writing failed (the cause is logged by the handler, never answered).
    #[error("failed to write template: {0}")]
    Write(#[source] std::io::Error),
}

/// A checked upload: the directory name and the files by cleaned path.
#[derive(Debug)]
pub(crate) struct Plan {
    /// `normalize_name(name)`: the template id.
    pub(crate) id: String,
    files: BTreeMap<RelPath, String>,
}

/// Checks an upload: the file count, then every path, before any file system access.
pub(crate) fn plan(name: &str, files: BTreeMap<String, String>) -> Result<Plan, ImportError> {
    if files.len() > MAX_FILES {
        return Err(ImportError::TooManyFiles(files.len()));
    }
    let mut checked = BTreeMap::new();
    for (raw, content) in files {
        let path = RelPath::parse(&raw).map_err(|_| ImportError::BadPath)?;
        if checked.insert(path, content).is_some() {
            return Err(ImportError::BadPath);
        }
    }
    // `a` and `a/b` cannot both be written: `a` would have to be a file and a directory.
    let paths: Vec<&str> = checked.keys().map(RelPath::as_str).collect();
    // (Sorting may put `a-x` between `a` and `a/b`: each path is checked against all later ones.)
    for (i, a) in paths.iter().enumerate() {
        let prefix = format!("{a}/");
        if paths[i + 1..].iter().any(|b| b.starts_with(&prefix)) {
            return Err(ImportError::BadPath);
        }
    }
    Ok(Plan {
        id: normalize_name(name),
        files: checked,
    })
}

/// Writes `plan` under `root` (blocking: run it off the async workers): into
/// `<root>/.import-<id>-<random>` first, renamed to `<root>/<id>` once complete; on any
/// failure the staging directory is removed and `<root>/<id>` never appears.
pub(crate) fn write(root: &Path, name: &str, plan: &Plan) -> Result<(), ImportError> {
    let target = root.join(&plan.id);
    if target.exists() {
        return Err(ImportError::Exists(plan.id.clone()));
    }
    let staging = root.join(format!(
        ".import-{}-{}",
        plan.id,
        uuid::Uuid::new_v4().simple()
    ));
    let result = stage(&staging, name, plan).and_then(|()| {
        if target.exists() {
            return Err(ImportError::Exists(plan.id.clone()));
        }
        std::fs::rename(&staging, &target).map_err(ImportError::Write)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn stage(staging: &Path, name: &str, plan: &Plan) -> Result<(), ImportError> {
    let mut dirs = std::fs::DirBuilder::new();
    dirs.mode(0o755);
    dirs.create(staging).map_err(ImportError::Write)?;
    dirs.recursive(true);
    let mut files: Vec<(PathBuf, &[u8])> = plan
        .files
        .iter()
        .map(|(path, content)| (staging.join(path.as_str()), content.as_bytes()))
        .collect();
    let generated;
    if !plan.files.keys().any(|p| p.as_str() == "config.yaml") {
        generated = generated::config_yaml(name, plan.files.keys());
        files.push((staging.join("config.yaml"), generated.as_bytes()));
    }
    for (path, content) in files {
        if let Some(parent) = path.parent() {
            dirs.create(parent).map_err(ImportError::Write)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(ImportError::Write)?;
        file.write_all(content).map_err(ImportError::Write)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> BTreeMap<String, String> {
        paths
            .iter()
            .map(|p| ((*p).to_owned(), String::new()))
            .collect()
    }

    #[test]
    fn plans_refuse_bad_and_clashing_paths() {
        assert!(plan("x", files(&["a.md", "skills/s/SKILL.md", ".env"])).is_ok());
        for bad in [
            &["../x"][..],
            &["/etc/passwd"],
            &["a\0b"],
            &[""],
            &["a/b", "a//b"],
            &["a", "a/b"],
            &["a", "a-x", "a/b"],
        ] {
            assert!(
                matches!(plan("x", files(bad)), Err(ImportError::BadPath)),
                "{bad:?}"
            );
        }
        let many: BTreeMap<String, String> = (0..=MAX_FILES)
            .map(|i| (format!("f{i}"), String::new()))
            .collect();
        assert!(matches!(
            plan("x", many),
            Err(ImportError::TooManyFiles(201))
        ));
        assert_eq!(plan("My Agent", files(&[])).unwrap().id, "my-agent");
    }
}
