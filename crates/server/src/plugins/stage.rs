//! `resolve_and_stage(source, sha256?)` (spec §1.5 table): parse, resolve, fetch, name
//! check, size cap, manifest integrity, caller pin — first failure wins; every failure is a
//! status and a fixed message (never resolver, network or filesystem text).

use std::path::Path;

use axum::http::StatusCode;
use molecule_domain::paths::plugin_name;
use serde_json::json;

use super::Files;
use super::github::{self, FetchError};
use super::manifest::{integrity_ok, sha256_hex};
use super::source::{GithubSpec, SCHEMES, Source};
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::github_app::GithubApp;

/// A plugin staged in memory.
#[derive(Debug)]
pub struct Staged {
    /// Its name.
    pub name: String,
    /// Its files.
    pub files: Files,
    /// The canonical source string.
    pub source: String,
}

/// The message of step 1.
pub const SOURCE_REQUIRED: &str =
    "'source' is required (e.g. \"local://my-plugin\" or \"github://owner/repo\")";

/// The plugin name a source will resolve to, known before any fetch (local: the spec;
/// github: the repository), after the checks of steps 1–5.
pub fn expected_name(catalog: &Catalog, raw: &str) -> Result<(Source, String), ApiError> {
    if raw.is_empty() {
        return Err(ApiError::bad_request(SOURCE_REQUIRED));
    }
    let source =
        Source::parse(raw).ok_or_else(|| ApiError::bad_request("invalid plugin source"))?;
    match source.scheme.as_str() {
        "local" => {
            plugin_name(&source.spec).map_err(|_| ApiError::bad_request("invalid plugin name"))?;
            let name = source.spec.clone();
            Ok((source, name))
        }
        "github" => {
            let spec = GithubSpec::parse(&source.spec)
                .ok_or_else(|| ApiError::bad_request("invalid plugin source"))?;
            if spec.reference.is_none() && !catalog.allow_unpinned {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unpinned github source: append a tag or commit SHA (e.g. \"github://owner/repo#v1.2.0\"). Set PLUGIN_ALLOW_UNPINNED=true to override",
                )
                .with("source", source.canonical()));
            }
            Ok((source, spec.repo))
        }
        _ => Err(ApiError::bad_request("failed to resolve plugin source")
            .with("available_schemes", json!(SCHEMES))),
    }
}

/// Runs the whole pipeline for `raw` (with the caller's `sha256` pin, if any). With a GitHub
/// App configured, `github://` downloads carry its installation token (private repositories,
/// higher rate limits); without one, or when no token can be had, they are anonymous.
pub async fn resolve_and_stage(
    catalog: &Catalog,
    client: &reqwest::Client,
    github_app: Option<&GithubApp>,
    raw: &str,
    pin: Option<&str>,
) -> Result<Staged, ApiError> {
    let (source, _) = expected_name(catalog, raw)?;
    let canonical = source.canonical();
    let with_source = |e: ApiError| e.with("source", canonical.clone());
    let cap = catalog.limits.max_dir_bytes;
    let fetched = match source.scheme.as_str() {
        "local" => {
            let dir = catalog.plugins_dir.join(&source.spec);
            let name = source.spec.clone();
            tokio::task::spawn_blocking(move || read_local(&dir, cap))
                .await
                .map_err(|e| FetchError::Other(e.to_string()))
                .and_then(|r| r)
                .map(|files| (name, files))
        }
        _ => match GithubSpec::parse(&source.spec) {
            Some(spec) => {
                let token = match github_app {
                    Some(app) => match app.token().await {
                        Ok(t) => Some(t.token),
                        Err(e) => {
                            tracing::warn!(error = %e, "no GitHub App token; fetching the plugin anonymously");
                            None
                        }
                    },
                    None => None,
                };
                github::fetch(
                    client,
                    &catalog.github_api_url,
                    token.as_deref(),
                    &spec,
                    cap,
                )
                .await
                .map(|files| (spec.repo, files))
            }
            None => Err(FetchError::Other("bad spec".into())),
        },
    };
    let (name, files) = fetched.map_err(|e| {
        tracing::warn!(source = %canonical, error = %e, "plugin fetch failed");
        let scheme = &source.scheme;
        with_source(match e {
            FetchError::NotFound => {
                ApiError::not_found(format!("failed to fetch plugin from {scheme}"))
            }
            FetchError::Deadline => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("failed to fetch plugin from {scheme}"),
            ),
            FetchError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "staged plugin exceeds size limit",
            ),
            FetchError::Unsafe(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin archive rejected: it contains a link or a path outside the plugin",
            ),
            FetchError::Other(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("failed to fetch plugin from {scheme}"),
            ),
        })
    })?;
    if plugin_name(&name).is_err() {
        return Err(with_source(ApiError::bad_request(
            "resolver returned invalid plugin name",
        )));
    }
    let total: u64 = files.values().map(|b| b.len() as u64).sum();
    if total > cap {
        return Err(with_source(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "staged plugin exceeds size limit",
        )));
    }
    if !integrity_ok(&files) {
        return Err(with_source(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin manifest integrity check failed",
        )));
    }
    if let Some(pin) = pin.map(str::trim).filter(|p| !p.is_empty()) {
        let Some(yaml) = files.get("plugin.yaml") else {
            return Err(with_source(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sha256 check failed: plugin.yaml not found in staged plugin",
            )));
        };
        let actual = sha256_hex(yaml);
        if !actual.eq_ignore_ascii_case(pin) {
            return Err(with_source(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("sha256 mismatch: expected {pin}, got {actual}"),
            )));
        }
    }
    Ok(Staged {
        name,
        files,
        source: canonical,
    })
}

/// Copies a local plugin tree into memory: regular files only (symlinks skipped), bounded.
fn read_local(dir: &Path, cap: u64) -> Result<Files, FetchError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(FetchError::Other("not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FetchError::NotFound),
        Err(e) => return Err(FetchError::Other(e.to_string())),
    }
    let mut files = Files::new();
    let mut total: u64 = 0;
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&path).map_err(|e| FetchError::Other(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| FetchError::Other(e.to_string()))?;
            let meta = std::fs::symlink_metadata(entry.path())
                .map_err(|e| FetchError::Other(e.to_string()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name == ".git" {
                continue;
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if meta.is_dir() {
                stack.push((entry.path(), child));
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
                if total > cap {
                    return Err(FetchError::TooLarge);
                }
                let bytes =
                    std::fs::read(entry.path()).map_err(|e| FetchError::Other(e.to_string()))?;
                files.insert(child, bytes);
            }
        }
    }
    Ok(files)
}
