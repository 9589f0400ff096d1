//! `cargo xtask tidy`: checks over the source text that no compiler or linter makes, in the
//! manner of rust-analyzer's tidy tests. Each finding names the file and line and says what
//! to do about it.
//!
//! - [`backend`]: one owner of the backend: only the lifecycle service calls the
//!   `Provisioner`, and only it and the files that hand the backend to it name the trait.
//! - [`length`]: no source file over [`length::MAX_LINES`] lines without a stated reason.
//! - [`cycles`]: no dependency cycle between the modules of one crate.

pub mod backend;
pub mod cycles;
pub mod length;
pub mod rust_text;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One finding: where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file, relative to the workspace root, with `/` separators.
    pub file: String,
    /// The line (1-based); 0 for the file as a whole.
    pub line: usize,
    /// What is wrong and how to fix it (may span several lines).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// A check over the workspace at a root: its findings.
type Check = fn(&Path) -> anyhow::Result<Vec<Problem>>;

/// `cargo xtask tidy`: every check over this workspace; all findings are printed before it
/// fails.
pub fn run() -> anyhow::Result<()> {
    let root = crate::workspace::workspace_root()?;
    let checks: [(&str, Check); 3] = [
        ("one owner of the backend", backend::check),
        ("file length", length::check),
        ("module cycles", cycles::check),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        let problems =
            check(&root).with_context(|| format!("tidy check `{name}` could not run"))?;
        if problems.is_empty() {
            println!("tidy: {name}: ok");
            continue;
        }
        println!("tidy: {name}: {} problem(s)", problems.len());
        for p in &problems {
            println!("{p}");
        }
        failed.push(name);
    }
    if !failed.is_empty() {
        bail!("tidy failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Every `.rs` file below `dir`, sorted, skipping the folders named in `skip` (and hidden ones).
pub fn rust_files(dir: &Path, skip: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(dir, skip, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(dir: &Path, skip: &[&str], out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        if path.is_dir() {
            if !name.starts_with('.') && !skip.contains(&name.as_str()) {
                collect(&path, skip, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `path` relative to `root`, with `/` separators (as findings name files).
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads a source file.
pub fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
