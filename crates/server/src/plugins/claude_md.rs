//! Removing a plugin's blocks from `/configs/CLAUDE.md` (spec §1.5 uninstall step 4): a line
//! starting `# Plugin: <name> /` starts a block; it ends at the second blank line (kept) or
//! at another `# Plugin: ` heading (kept). Other plugins' blocks and user text survive.

/// `content` without the blocks of plugin `name`.
pub fn strip(content: &str, name: &str) -> String {
    let start = format!("# Plugin: {name} /");
    let mut out = String::with_capacity(content.len());
    let mut skipping = false;
    let mut blanks = 0;
    for line in content.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare.starts_with(&start) {
            skipping = true;
            blanks = 0;
            continue;
        }
        if skipping {
            if bare.trim().is_empty() {
                blanks += 1;
                if blanks < 2 {
                    continue;
                }
                skipping = false;
            } else if bare.starts_with("# Plugin: ") {
                skipping = false;
            } else {
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_target() {
        let md = "user text\n\n# Plugin: a.b / rule one\nrule body\n\nmore\n\nafter a\n# Plugin: other / x\nkeep\n\n\n# Plugin: a.b / skill\nbody\n# Plugin: z / y\nz body\n";
        let out = strip(md, "a.b");
        assert_eq!(
            out,
            "user text\n\n\nafter a\n# Plugin: other / x\nkeep\n\n\n# Plugin: z / y\nz body\n"
        );
        // A regex-special name is matched literally.
        assert_eq!(
            strip("# Plugin: a+b / x\ny\n", "a.b"),
            "# Plugin: a+b / x\ny\n"
        );
    }
}
