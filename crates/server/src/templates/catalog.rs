//! The template catalogue: each immediate subdirectory of the configs directory with a
//! readable `config.yaml`, in name order, as the palette entry of `GET /templates`.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The keys of a template's `config.yaml` the catalogue reads. Any other key is ignored; a
/// key of the wrong type makes the whole file unreadable (the template is skipped).
#[derive(Debug, Default, Deserialize)]
struct TemplateConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tier: Option<i64>,
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    skills: Option<Vec<String>>,
    /// The structured provider registry (top level).
    #[serde(default)]
    providers: Option<Vec<Provider>>,
    #[serde(default)]
    runtime_config: Option<RuntimeConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    models: Option<Vec<ModelEntry>>,
    #[serde(default)]
    required_env: Option<Vec<String>>,
    /// Provider slugs (distinct from the top-level registry).
    #[serde(default)]
    providers: Option<Vec<String>>,
    #[serde(default)]
    provision_timeout_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct ModelEntry {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    required_env: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct Provider {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    auth_mode: Option<String>,
    #[serde(default)]
    model_prefixes: Option<Vec<String>>,
    #[serde(default)]
    model_aliases: Option<Vec<String>>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    auth_env: Option<Vec<String>>,
}

/// The catalogue of `dir` (blocking: run it off the async workers). A missing directory is an
/// empty catalogue; a template whose `config.yaml` does not parse is skipped with a log line.
pub(crate) fn list(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        // Hidden directories: import staging, VCS metadata.
        .filter(|name| !name.starts_with('.'))
        .collect();
    ids.sort();
    ids.into_iter()
        .filter_map(|id| {
            let text = std::fs::read_to_string(dir.join(&id).join("config.yaml")).ok()?;
            match yaml_serde::from_str::<TemplateConfig>(&text) {
                Ok(config) => Some(entry(&id, config)),
                Err(e) => {
                    tracing::warn!(template = %id, error = %e, "templates: config.yaml does not parse; skipped");
                    None
                }
            }
        })
        .collect()
}

/// One palette entry; the optional keys are left out when empty (never `null`).
fn entry(id: &str, config: TemplateConfig) -> Value {
    let runtime_config = config.runtime_config.unwrap_or_default();
    let model = config
        .model
        .filter(|m| !m.is_empty())
        .or(runtime_config.model)
        .unwrap_or_default();
    let skills = config.skills.unwrap_or_default();
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    out.insert(
        "name".into(),
        json!(
            config
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| id.to_owned())
        ),
    );
    out.insert(
        "description".into(),
        json!(config.description.unwrap_or_default()),
    );
    out.insert("tier".into(), json!(config.tier.unwrap_or(0)));
    out.insert("runtime".into(), json!(config.runtime.unwrap_or_default()));
    out.insert("model".into(), json!(model));
    let models: Vec<Value> = runtime_config
        .models
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let mut model =
                json!({"id": m.id.unwrap_or_default(), "name": m.name.unwrap_or_default()});
            if let Some(env) = m.required_env.filter(|e| !e.is_empty()) {
                model["required_env"] = json!(env);
            }
            model
        })
        .collect();
    put_list(&mut out, "models", models);
    put_list(
        &mut out,
        "required_env",
        strings(runtime_config.required_env),
    );
    put_list(&mut out, "providers", strings(runtime_config.providers));
    let registry: Vec<Value> = config
        .providers
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name.unwrap_or_default(),
                "auth_mode": p.auth_mode.unwrap_or_default(),
                "model_prefixes": p.model_prefixes.unwrap_or_default(),
                "model_aliases": p.model_aliases.unwrap_or_default(),
                "base_url": p.base_url.unwrap_or_default(),
                "auth_env": p.auth_env.unwrap_or_default(),
            })
        })
        .collect();
    put_list(&mut out, "provider_registry", registry);
    out.insert("skill_count".into(), json!(skills.len()));
    out.insert("skills".into(), json!(skills));
    if let Some(secs) = runtime_config.provision_timeout_seconds.filter(|s| *s > 0) {
        out.insert("provision_timeout_seconds".into(), json!(secs));
    }
    Value::Object(out)
}

fn strings(list: Option<Vec<String>>) -> Vec<Value> {
    list.unwrap_or_default()
        .into_iter()
        .map(Value::String)
        .collect()
}

fn put_list(out: &mut Map<String, Value>, key: &str, list: Vec<Value>) {
    if !list.is_empty() {
        out.insert(key.to_owned(), Value::Array(list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fall_back_and_omit_empty_lists() {
        let config: TemplateConfig = yaml_serde::from_str(
            "description: d\nruntime_config:\n  model: rc-model\n  required_env: [A]\n\
             providers:\n  - name: p\n    base_url: null\n",
        )
        .unwrap();
        let e = entry("t1", config);
        assert_eq!(e["name"], "t1");
        assert_eq!(e["model"], "rc-model");
        assert_eq!(e["required_env"], json!(["A"]));
        assert_eq!(e["provider_registry"][0]["base_url"], "");
        assert_eq!(e["skills"], json!([]));
        assert_eq!(e["skill_count"], 0);
        assert!(e.get("models").is_none() && e.get("providers").is_none());
        assert!(e.get("provision_timeout_seconds").is_none());
        assert!(yaml_serde::from_str::<TemplateConfig>("tier: [a, b]\n").is_err());
    }
}
