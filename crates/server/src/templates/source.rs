//! Where a new workspace's `/configs` comes from (spec lifecycle §6.1 step 7, §5.1): the
//! template it names, else `<runtime>-default`, else a generated `config.yaml`; and the
//! runtime and model a template fills in when the request leaves them out.
//!
//! Template directories are read from the platform host without following symbolic links,
//! within [`MAX_FILES`] and [`MAX_BYTES`].

use std::path::{Path, PathBuf};

use molecule_domain::RelPath;
use molecule_domain::paths::normalize_name;
use serde::Deserialize;

use super::generated::quoted;

/// Files for a workspace's config root, at their relative paths.
pub(crate) type ConfigFiles = Vec<(RelPath, Vec<u8>)>;

/// The most files a template may bring.
pub(crate) const MAX_FILES: usize = 1000;
/// The most bytes a template may bring, all files together.
pub(crate) const MAX_BYTES: usize = 64 * 1024 * 1024;

/// Why a template's files could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// Over [`MAX_FILES`] or [`MAX_BYTES`].
    #[error("template too large")]
    TooLarge,
    /// The directory could not be read.
    #[error("template unreadable: {0}")]
    Io(#[from] std::io::Error),
}

/// What a new workspace is, for its generated `config.yaml`.
#[derive(Debug, Clone)]
pub(crate) struct Identity<'a> {
    pub(crate) name: &'a str,
    pub(crate) role: Option<&'a str>,
    pub(crate) tier: i32,
    pub(crate) runtime: &'a str,
    pub(crate) model: Option<&'a str>,
}

/// The runtime and model a template's `config.yaml` names (`model` at the top level or
/// under `runtime_config`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TemplateDefaults {
    pub(crate) runtime: Option<String>,
    pub(crate) model: Option<String>,
}

#[derive(Deserialize)]
struct DefaultsYaml {
    runtime: Option<String>,
    model: Option<String>,
    runtime_config: Option<RuntimeConfigYaml>,
}

#[derive(Deserialize)]
struct RuntimeConfigYaml {
    model: Option<String>,
}

/// The template directory `<configs>/<template>` when it is a directory (not a link).
pub(crate) fn template_dir(configs: &Path, template: &str) -> Option<PathBuf> {
    let dir = configs.join(template);
    dir.symlink_metadata()
        .is_ok_and(|m| m.is_dir())
        .then_some(dir)
}

/// The template directory of a workspace named `name` (the Files API's fallback, restart's
/// `apply_template`): `<configs>/<normalize_name(name)>`,
/// else a directory named `lower(name)` with spaces as `-` (when that is one plain path
/// piece), else the first directory (by name, not `ws-*`) whose `config.yaml` has a first
/// `name:` line equal to `name` ignoring case.
pub(crate) fn dir_for_workspace(configs: &Path, name: &str) -> Option<PathBuf> {
    let is_dir = |p: &Path| p.symlink_metadata().is_ok_and(|m| m.is_dir());
    let normalized = configs.join(normalize_name(name));
    if is_dir(&normalized) {
        return Some(normalized);
    }
    let dashed = name.to_lowercase().replace(' ', "-");
    let plain = !dashed.is_empty()
        && !dashed.contains(['/', '\\', '\0'])
        && dashed != "."
        && !dashed.contains("..");
    if plain && is_dir(&configs.join(&dashed)) {
        return Some(configs.join(dashed));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(configs)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with("ws-"))
        .map(|e| e.path())
        .filter(|p| is_dir(p))
        .collect();
    dirs.sort();
    dirs.into_iter().find(|dir| {
        std::fs::read_to_string(dir.join("config.yaml"))
            .ok()
            .and_then(|text| first_name(&text))
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// The value of the first `name:` line of a config.yaml, unquoted.
fn first_name(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("name:"))?;
    let value = line.trim_start_matches("name:").trim();
    Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
}

/// The runtime and model of `<dir>/config.yaml`; nothing when it is missing or does not
/// parse.
pub(crate) fn defaults(dir: &Path) -> TemplateDefaults {
    let Ok(text) = std::fs::read_to_string(dir.join("config.yaml")) else {
        return TemplateDefaults::default();
    };
    let Ok(parsed) = yaml_serde::from_str::<DefaultsYaml>(&text) else {
        return TemplateDefaults::default();
    };
    let clean = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    TemplateDefaults {
        runtime: clean(parsed.runtime),
        model: clean(parsed.model).or_else(|| clean(parsed.runtime_config.and_then(|r| r.model))),
    }
}

/// The files a new workspace starts from: the template's (when `template` names a directory
/// under `configs`), else `<runtime>-default`'s, else a generated `config.yaml`.
pub(crate) fn config_files(
    configs: Option<&Path>,
    template: Option<&str>,
    who: &Identity<'_>,
) -> Result<ConfigFiles, SourceError> {
    let dir = configs.and_then(|c| {
        template
            .and_then(|t| template_dir(c, t))
            .or_else(|| template_dir(c, &format!("{}-default", who.runtime)))
    });
    match dir {
        Some(dir) => read_tree(&dir),
        None => Ok(generated_only(who)),
    }
}

fn generated_only(who: &Identity<'_>) -> ConfigFiles {
    match RelPath::parse("config.yaml") {
        Ok(path) => vec![(path, default_config(who).into_bytes())],
        Err(_) => Vec::new(),
    }
}

/// The generated `config.yaml` of a workspace without a template (§5.1). Quoted values have
/// newlines turned into spaces and carriage returns dropped.
pub(crate) fn default_config(who: &Identity<'_>) -> String {
    let flat = |s: &str| s.replace('\n', " ").replace('\r', "");
    let runtime = if who.runtime.is_empty() {
        "claude-code"
    } else {
        who.runtime
    };
    let default_model = if runtime == "claude-code" {
        "sonnet"
    } else {
        "anthropic:claude-opus-4-7"
    };
    let model = who.model.filter(|m| !m.is_empty()).unwrap_or(default_model);
    format!(
        "name: {}\ndescription: {}\nversion: 1.0.0\ntier: {}\nruntime: {}\nmodel: {}\n\
         runtime_config:\n  timeout: 0\n",
        quoted(&flat(who.name)),
        quoted(&flat(who.role.unwrap_or(""))),
        who.tier,
        quoted(runtime),
        quoted(&flat(model)),
    )
}

/// Every regular file under `dir` at its relative path. Links and other special files are
/// skipped, as are names that are not plain relative paths.
pub(crate) fn read_tree(dir: &Path) -> Result<ConfigFiles, SourceError> {
    let mut files = Vec::new();
    let mut total = 0usize;
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&abs)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push((entry.path(), child));
            } else if kind.is_file() {
                let Ok(path) = RelPath::parse(&child) else {
                    continue;
                };
                let bytes = std::fs::read(entry.path())?;
                total = total.saturating_add(bytes.len());
                if files.len() >= MAX_FILES || total > MAX_BYTES {
                    return Err(SourceError::TooLarge);
                }
                files.push((path, bytes));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(runtime: &'a str, model: Option<&'a str>) -> Identity<'a> {
        Identity {
            name: "Line\nbreak \"quoted\"",
            role: Some("a\r\nrole"),
            tier: 2,
            runtime,
            model,
        }
    }

    #[test]
    fn the_generated_config_parses_back() {
        let text = default_config(&who("claude-code", None));
        let parsed: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(parsed["name"].as_str(), Some("Line break \"quoted\""));
        assert_eq!(parsed["description"].as_str(), Some("a role"));
        assert_eq!(parsed["tier"].as_i64(), Some(2));
        assert_eq!(parsed["runtime"].as_str(), Some("claude-code"));
        assert_eq!(parsed["model"].as_str(), Some("sonnet"));
        assert_eq!(parsed["runtime_config"]["timeout"].as_i64(), Some(0));
        let other = default_config(&who("langgraph", None));
        assert!(other.contains("model: \"anthropic:claude-opus-4-7\"\n"));
        let chosen = default_config(&who("langgraph", Some("openai:gpt-5")));
        assert!(chosen.contains("model: \"openai:gpt-5\"\n"));
    }

    #[test]
    fn templates_win_then_runtime_defaults_then_generation() {
        let root = tempfile::tempdir().unwrap();
        let configs = root.path();
        std::fs::create_dir_all(configs.join("writer/skills/s")).unwrap();
        std::fs::write(configs.join("writer/config.yaml"), "name: w\n").unwrap();
        std::fs::write(configs.join("writer/skills/s/SKILL.md"), "skill").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", configs.join("writer/leak")).unwrap();
        std::fs::create_dir_all(configs.join("langgraph-default")).unwrap();
        std::fs::write(configs.join("langgraph-default/config.yaml"), "name: d\n").unwrap();

        let files = config_files(Some(configs), Some("writer"), &who("langgraph", None)).unwrap();
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["config.yaml", "skills/s/SKILL.md"], "links skipped");

        let files = config_files(Some(configs), Some("missing"), &who("langgraph", None)).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].1, b"name: d\n");

        let files = config_files(Some(configs), None, &who("hermes", None)).unwrap();
        assert_eq!(files.len(), 1);
        assert!(String::from_utf8_lossy(&files[0].1).contains("runtime: \"hermes\""));
        assert_eq!(
            config_files(None, Some("writer"), &who("hermes", None))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn first_name_lines() {
        assert_eq!(
            first_name("x: 1\nname: \"My Agent\"\n"),
            Some("My Agent".into())
        );
        assert_eq!(first_name("description: d\n"), None);
    }

    #[test]
    fn defaults_come_from_the_top_level_or_runtime_config() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::write(
            dir.join("config.yaml"),
            "runtime: hermes\nruntime_config:\n  model: \"x:y\"\n",
        )
        .unwrap();
        assert_eq!(
            defaults(dir),
            TemplateDefaults {
                runtime: Some("hermes".into()),
                model: Some("x:y".into())
            }
        );
        std::fs::write(dir.join("config.yaml"), "model: top\nruntime: [\n").unwrap();
        assert_eq!(defaults(dir), TemplateDefaults::default(), "unparsable");
    }
}
