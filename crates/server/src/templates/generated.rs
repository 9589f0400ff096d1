//! The `config.yaml` written for an imported template that brings none (spec templates
//! §1.1): fixed keys, the name as a double-quoted YAML scalar, the root-level `*.md` files as
//! prompt files and each `skills/<X>/SKILL.md` as a skill, both sorted.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use molecule_domain::paths::RelPath;

/// `value` as a YAML double-quoted scalar: `\`, `"`, newline, CR and tab escaped as the spec
/// lists, and every other control or line-separator character as `\uXXXX`, so the scalar
/// parses back to exactly `value` and can never end its line early.
pub(crate) fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The generated `config.yaml` for a template named `name` holding `files`.
pub(crate) fn config_yaml<'a>(name: &str, files: impl IntoIterator<Item = &'a RelPath>) -> String {
    let mut prompts = BTreeSet::new();
    let mut skills = BTreeSet::new();
    for path in files {
        let parts: Vec<&str> = path.components().collect();
        match parts.as_slice() {
            [file] if file.ends_with(".md") => {
                prompts.insert(*file);
            }
            ["skills", skill, "SKILL.md"] => {
                skills.insert(*skill);
            }
            _ => {}
        }
    }
    let mut out = format!(
        "name: {}\ndescription: Imported agent\nversion: 1.0.0\ntier: 3\n\
         model: anthropic:claude-haiku-4-5-20251001\n\nprompt_files:\n",
        quoted(name)
    );
    if prompts.is_empty() {
        out.push_str("  - system-prompt.md\n");
    }
    for file in prompts {
        let _ = writeln!(out, "  - {}", quoted(file));
    }
    out.push_str("\nskills:\n");
    if skills.is_empty() {
        out.push_str("  []\n");
    }
    for skill in skills {
        let _ = writeln!(out, "  - {}", quoted(skill));
    }
    out.push_str(
        "\ntools: []\n\na2a:\n  port: 8000\n  streaming: true\n  push_notifications: true\n\n\
         env:\n  required:\n    - ANTHROPIC_API_KEY\n  optional: []\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_round_trip_without_new_keys() {
        for name in [
            "plain",
            "quote \" and \\ back\\slash",
            "line\nbreak: injected\nevil: true",
            "cr\r\ntab\t",
            "\"\nruntime: evil\n#",
            "nul\u{0}bell\u{7}del\u{7f}c1\u{85}ls\u{2028}bom\u{feff}",
            "emoji 🎉 ünïcode",
        ] {
            let text = config_yaml(name, &[]);
            let parsed: yaml_serde::Mapping = yaml_serde::from_str(&text).unwrap();
            assert_eq!(
                parsed.get("name").and_then(|v| v.as_str()),
                Some(name),
                "{text}"
            );
            let keys: Vec<&str> = parsed.keys().filter_map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "name",
                    "description",
                    "version",
                    "tier",
                    "model",
                    "prompt_files",
                    "skills",
                    "tools",
                    "a2a",
                    "env"
                ]
            );
        }
    }

    #[test]
    fn prompt_files_and_skills_are_sorted() {
        let files: Vec<RelPath> = [
            "b.md",
            "a.md",
            "dir/c.md",
            "skills/z/SKILL.md",
            "skills/y/SKILL.md",
            "x.txt",
        ]
        .iter()
        .map(|p| RelPath::parse(p).unwrap())
        .collect();
        let text = config_yaml("n", &files);
        assert!(
            text.contains(
                "prompt_files:\n  - \"a.md\"\n  - \"b.md\"\n\nskills:\n  - \"y\"\n  - \"z\"\n"
            ),
            "{text}"
        );
        let none = config_yaml("n", &[]);
        assert!(
            none.contains("prompt_files:\n  - system-prompt.md\n\nskills:\n  []\n"),
            "{none}"
        );
    }
}
