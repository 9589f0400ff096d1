//! File length: a source file over [`MAX_LINES`] lines mixes concerns more often than not.
//! One that is long for a reason says so near its top: its first [`REASON_WITHIN`] lines
//! contain the words [`REASON`] (`//! One table, long because …`).

use std::path::Path;

use super::{Problem, read, relative, rust_files};

/// The most lines a file may have without a stated reason.
pub const MAX_LINES: usize = 600;
/// The words that state the reason.
pub const REASON: &str = "long because";
/// How many lines from the top the reason must stand within.
pub const REASON_WITHIN: usize = 10;
/// The folders checked, relative to the workspace root.
pub const SCOPE: &[&str] = &["crates", "xtask"];
/// Folders never checked (fuzz targets, build output).
pub const SKIP: &[&str] = &["fuzz", "target"];

/// The findings over this workspace.
pub fn check(root: &Path) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for dir in SCOPE {
        for path in rust_files(&root.join(dir), SKIP)? {
            if let Some(p) = check_text(&relative(root, &path), &read(&path)?) {
                problems.push(p);
            }
        }
    }
    Ok(problems)
}

/// The finding for one file, if it is too long without a reason.
pub fn check_text(file: &str, text: &str) -> Option<Problem> {
    let lines = text.lines().count();
    if lines <= MAX_LINES || text.lines().take(REASON_WITHIN).any(|l| l.contains(REASON)) {
        return None;
    }
    Some(Problem {
        file: file.to_owned(),
        line: 0,
        message: format!(
            "{lines} lines, over the limit of {MAX_LINES}: split it into modules by concern, \
             or state the reason within its first {REASON_WITHIN} lines \
             (`//! … {REASON} …`)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, head: &str) -> String {
        let mut text = String::from(head);
        for i in text.lines().count()..n {
            text.push_str(&format!("// line {i}\n"));
        }
        text
    }

    #[test]
    fn long_files_need_a_reason_near_the_top() {
        assert_eq!(check_text("a.rs", &lines(MAX_LINES, "")), None);
        let p = check_text("a.rs", &lines(MAX_LINES + 1, "")).unwrap();
        assert!(
            p.to_string()
                .starts_with("a.rs: 601 lines, over the limit of 600"),
            "{p}"
        );
        let reason =
            "//! The table of every route.\n//! Long: one table, long because it is one.\n";
        assert_eq!(check_text("a.rs", &lines(900, reason)), None);
        let late = format!("{}// long because\n", "\n".repeat(REASON_WITHIN));
        assert!(check_text("a.rs", &lines(900, &late)).is_some());
    }
}
