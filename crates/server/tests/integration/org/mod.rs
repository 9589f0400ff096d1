//! Org templates, bundles and plugins over real HTTP on both databases: an org template tree
//! imported through the lifecycle service (files written into each workspace before its
//! start), export → import round trips, plugin install/uninstall/download from a local
//! registry and from a local server speaking the GitHub tarball API, the allowlist, and every
//! bad input refused with nothing created.

mod bundles;
mod import;
mod plugins;
mod private_plugins;

use std::path::Path;

use molecule_server::AppState;
use molecule_server::catalog::Catalog;

/// Writes `files` (path → content) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// A state whose org templates, plugins and workspace templates live under `dir`.
pub fn with_dirs(dir: &Path, github: Option<String>) -> impl FnOnce(AppState) -> AppState {
    let catalog = Catalog {
        org_templates_dir: dir.join("org-templates"),
        plugins_dir: dir.join("plugins"),
        github_api_url: github.unwrap_or_else(|| "http://127.0.0.1:1".into()),
        ..Catalog::default()
    };
    let configs = dir.join("configs");
    move |s: AppState| s.with_catalog(catalog).with_configs_dir(Some(configs))
}
