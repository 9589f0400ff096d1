//! The config source of a restart (spec lifecycle §7.4): a plain restart keeps the config
//! storage as it is (the canvas's Save + Restart relies on it); the options of
//! `POST /workspaces/:id/restart` can apply a template over it.

use std::path::{Path, PathBuf};

use molecule_domain::{Runtime, validation};
use serde_json::Value;

use super::source::{self, ConfigFiles, SourceError};

/// The label of a restart that keeps the config storage.
pub(crate) const EXISTING_VOLUME: &str = "existing-volume";

/// The restart body's options that choose a config source.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RestartOptions {
    /// `template`: a directory under the configs directory.
    pub(crate) template: Option<String>,
    /// `apply_template`: the workspace's own template, else `<runtime>-default`.
    pub(crate) apply_template: bool,
    /// `rebuild_config`: the workspace's template under `org-templates/`.
    pub(crate) rebuild_config: bool,
}

impl RestartOptions {
    /// The options of a restart body (a JSON object; anything else is no option).
    pub(crate) fn from_body(body: &serde_json::Map<String, Value>) -> Self {
        let flag = |k: &str| body.get(k).and_then(Value::as_bool) == Some(true);
        Self {
            template: body
                .get("template")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            apply_template: flag("apply_template"),
            rebuild_config: flag("rebuild_config"),
        }
    }
}

/// The directory a restart applies and its label, in the spec's order; `None` keeps the
/// config storage. An explicit template that is invalid or missing is ignored (logged).
pub(crate) fn resolve(
    configs: &Path,
    name: &str,
    runtime: &str,
    options: &RestartOptions,
) -> Option<(PathBuf, String)> {
    if let Some(t) = &options.template {
        if validation::template_name(t).is_ok()
            && let Some(dir) = source::template_dir(configs, t)
        {
            return Some((dir, t.clone()));
        }
        tracing::warn!(template = %t, "restart: template not found; ignored");
    }
    if options.apply_template
        && options.template.is_none()
        && let Some(dir) = source::dir_for_workspace(configs, name)
    {
        let label = dir.file_name()?.to_string_lossy().into_owned();
        return Some((dir, label));
    }
    if options.rebuild_config
        && let Some(dir) = source::dir_for_workspace(&configs.join("org-templates"), name)
    {
        let label = format!("org-templates/{}", dir.file_name()?.to_string_lossy());
        return Some((dir, label));
    }
    // The runtime goes through the allowlist: the column never becomes a path piece as is.
    if options.apply_template && Runtime::BUILTIN.contains(&runtime) {
        let label = format!("{runtime}-default");
        return source::template_dir(configs, &label).map(|dir| (dir, label));
    }
    None
}

/// The files of the directory [`resolve`] chose, and its label; nothing and
/// [`EXISTING_VOLUME`] when it chose none.
pub(crate) fn files(
    configs: Option<&Path>,
    name: &str,
    runtime: &str,
    options: &RestartOptions,
) -> Result<(ConfigFiles, String), SourceError> {
    match configs.and_then(|c| resolve(c, name, runtime, options)) {
        Some((dir, label)) => Ok((source::read_tree(&dir)?, label)),
        None => Ok((Vec::new(), EXISTING_VOLUME.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(template: Option<&str>, apply: bool, rebuild: bool) -> RestartOptions {
        RestartOptions {
            template: template.map(str::to_owned),
            apply_template: apply,
            rebuild_config: rebuild,
        }
    }

    #[test]
    fn sources_follow_the_spec_order() {
        let root = tempfile::tempdir().unwrap();
        let c = root.path();
        for dir in [
            "explicit",
            "my-agent",
            "org-templates/team-x",
            "hermes-default",
        ] {
            std::fs::create_dir_all(c.join(dir)).unwrap();
        }
        std::fs::write(c.join("org-templates/team-x/config.yaml"), "name: Team X\n").unwrap();
        let label =
            |name: &str, o: RestartOptions| resolve(c, name, "hermes", &o).map(|(_, label)| label);
        assert_eq!(label("My Agent", options(None, false, false)), None);
        assert_eq!(
            label("My Agent", options(Some("explicit"), true, false)).as_deref(),
            Some("explicit")
        );
        assert_eq!(
            label("My Agent", options(None, true, false)).as_deref(),
            Some("my-agent")
        );
        // An explicit template that is not there: no name match, but the runtime default.
        assert_eq!(
            label("My Agent", options(Some("../etc"), true, false)).as_deref(),
            Some("hermes-default")
        );
        assert_eq!(
            label("Team X", options(None, false, true)).as_deref(),
            Some("org-templates/team-x")
        );
        assert_eq!(label("Other", options(None, false, false)), None);
        assert_eq!(
            resolve(c, "Other", "../../etc", &options(None, true, false)),
            None,
            "the runtime is allowlisted"
        );
    }

    #[test]
    fn bodies_give_options() {
        let body = serde_json::json!({"template": " t ", "apply_template": true, "reset": true});
        assert_eq!(
            RestartOptions::from_body(body.as_object().unwrap()),
            options(Some("t"), true, false)
        );
        let body = serde_json::json!({"template": 3, "rebuild_config": "yes"});
        assert_eq!(
            RestartOptions::from_body(body.as_object().unwrap()),
            RestartOptions::default()
        );
    }
}
