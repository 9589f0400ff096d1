//! The import plan: the whole tree validated and every file read before the first insert
//! (spec §2.5 #11), so an import either creates everything it planned or nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use molecule_domain::paths::plugin_name;
use molecule_domain::{DeliveryMode, RelPath, Runtime, Tier, WorkspaceAccess, validation};
use molecule_store::NewWorkspace;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::layout::{Shape, slot};
use super::paths::inside_root;
use super::prompts::{self, read_text};
use super::render;
use super::template::{Defaults, OrgTemplate, WorkspaceSpec, merge_plugins, merge_routing};
use crate::channels::Endpoints;

/// Largest sum of the files copied into one workspace, bytes.
pub const MAX_TREE_BYTES: u64 = 20 * 1024 * 1024;
/// Most files copied into one workspace.
pub const MAX_TREE_FILES: usize = 2000;
/// Largest `.env` file read, bytes.
const MAX_ENV_BYTES: u64 = 64 * 1024;

/// Where an import reads from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The org template's own directory (none: an inline template).
    pub org_base: Option<&'a Path>,
    /// The workspace templates directory.
    pub configs_dir: Option<&'a Path>,
    /// The plugin registry.
    pub plugins_dir: &'a Path,
    /// The chat platforms (channel config validation).
    pub endpoints: &'a Endpoints,
    /// Now, for the schedules' first runs.
    pub now: OffsetDateTime,
}

/// A schedule to create.
#[derive(Debug, Clone)]
pub struct PlannedSchedule {
    /// Name.
    pub name: String,
    /// Cron expression.
    pub cron_expr: String,
    /// Zone.
    pub timezone: String,
    /// Prompt.
    pub prompt: String,
    /// Enabled.
    pub enabled: bool,
    /// First run.
    pub next_run_at: OffsetDateTime,
}

/// A channel to create.
#[derive(Debug, Clone)]
pub struct PlannedChannel {
    /// Adapter type.
    pub channel_type: String,
    /// Expanded config.
    pub config: Map<String, Value>,
    /// Keys sealed at rest.
    pub sensitive: Vec<String>,
    /// Allowed users.
    pub allowed_users: Vec<String>,
    /// Enabled.
    pub enabled: bool,
}

/// One workspace to create, in pre-order (parents before children).
#[derive(Debug)]
pub struct Node {
    /// Index of the parent in the plan.
    pub parent: Option<usize>,
    /// The row.
    pub new: NewWorkspace,
    /// Its model.
    pub model: String,
    /// External (no provisioning).
    pub external: bool,
    /// Its URL when external.
    pub url: Option<String>,
    /// Absolute canvas position.
    pub abs: (f64, f64),
    /// Position relative to the parent.
    pub rel: (f64, f64),
    /// Memories `(content, scope)`.
    pub memories: Vec<(String, String)>,
    /// Files written into its config root before it starts.
    pub files: Vec<(RelPath, Vec<u8>)>,
    /// Secrets from `.env` files.
    pub secrets: Vec<(String, String)>,
    /// Schedules.
    pub schedules: Vec<PlannedSchedule>,
    /// Channels.
    pub channels: Vec<PlannedChannel>,
    /// Channels skipped: `(type, reason)`.
    pub channels_skipped: Vec<(String, String)>,
}

/// A refused template; the message names the workspace and is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

fn err(ws: &str, reason: impl std::fmt::Display) -> PlanError {
    PlanError(format!("workspace {ws}: {reason}"))
}

/// Plans the whole tree of `t`.
pub fn plan(t: &OrgTemplate, src: &Sources<'_>) -> Result<Vec<Node>, PlanError> {
    let org_env = match src.org_base {
        Some(base) => read_text(&base.join(".env"), MAX_ENV_BYTES)
            .map(|t| render::parse_env(&t))
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut nodes = Vec::new();
    for ws in &t.workspaces {
        let xy = (ws.canvas.x, ws.canvas.y);
        plan_node(ws, None, xy, xy, &t.defaults, &org_env, src, &mut nodes)?;
    }
    Ok(nodes)
}

fn shape(ws: &WorkspaceSpec) -> Shape {
    Shape {
        children: ws.children.iter().map(shape).collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_node(
    ws: &WorkspaceSpec,
    parent: Option<usize>,
    abs: (f64, f64),
    rel: (f64, f64),
    d: &Defaults,
    org_env: &BTreeMap<String, String>,
    src: &Sources<'_>,
    out: &mut Vec<Node>,
) -> Result<(), PlanError> {
    let node = plan_one(ws, parent, abs, rel, d, org_env, src)?;
    let me = out.len();
    out.push(node);
    let shapes: Vec<Shape> = ws.children.iter().map(shape).collect();
    for (i, child) in ws.children.iter().enumerate() {
        let r = slot(i, &shapes);
        let a = (abs.0 + r.0, abs.1 + r.1);
        plan_node(child, Some(me), a, r, d, org_env, src, out)?;
    }
    Ok(())
}

fn first<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.trim().is_empty() { b } else { a }
}

fn plan_one(
    ws: &WorkspaceSpec,
    parent: Option<usize>,
    abs: (f64, f64),
    rel: (f64, f64),
    d: &Defaults,
    org_env: &BTreeMap<String, String>,
    src: &Sources<'_>,
) -> Result<Node, PlanError> {
    let name = ws.name.trim().to_owned();
    if name.is_empty() {
        return Err(PlanError("every workspace needs a name".into()));
    }
    validation::name(&name).map_err(|e| err(&name, e))?;
    if !ws.role.is_empty() {
        validation::role(&ws.role).map_err(|e| err(&name, e))?;
    }
    let runtime = if ws.external {
        Runtime::EXTERNAL.to_owned()
    } else {
        render::sanitize_runtime(first(&ws.runtime, &d.runtime), Runtime::DEFAULT)
    };
    let runtime = Runtime::new(runtime).map_err(|e| err(&name, e))?;
    let model = first(&ws.model, &d.model).trim().to_owned();
    let model = if model.is_empty() {
        render::default_model(runtime.as_str()).to_owned()
    } else {
        model
    };
    validation::model(&model).map_err(|e| err(&name, e))?;
    let tier_n = [ws.tier, d.tier].into_iter().find(|t| *t != 0).unwrap_or(2);
    let tier =
        Tier::from_request(tier_n).map_err(|_| err(&name, "tier must be between 1 and 4"))?;
    // The files_dir's own .env overrides the org's.
    let files_dir = ws.files_dir.trim();
    let files_root = match (src.org_base, files_dir.is_empty()) {
        (Some(base), false) => Some(
            inside_root(base, files_dir)
                .map_err(|_| err(&name, "files_dir is outside the template"))?,
        ),
        (None, false) => {
            return Err(err(
                &name,
                "files_dir cannot be used with an inline-template import",
            ));
        }
        _ => None,
    };
    let mut env = org_env.clone();
    if let Some(dir) = &files_root
        && let Some(text) = read_text(&dir.join(".env"), MAX_ENV_BYTES)
    {
        env.extend(render::parse_env(&text));
    }
    let workspace_dir = if ws.workspace_dir.trim().is_empty() {
        None
    } else {
        let e = render::expand(ws.workspace_dir.trim(), &env);
        if e.unresolved || e.text.is_empty() {
            return Err(err(&name, "workspace_dir references an unset variable"));
        }
        validation::workspace_dir(&e.text).map_err(|_| err(&name, "invalid workspace_dir"))?;
        Some(e.text)
    };
    let access = match ws.workspace_access.trim() {
        "" => WorkspaceAccess::None,
        a => a
            .parse::<WorkspaceAccess>()
            .map_err(|_| err(&name, format!("invalid workspace_access {a:?}")))?,
    };
    if access.needs_directory() && workspace_dir.is_none() {
        return Err(err(&name, "workspace_access needs a workspace_dir"));
    }
    let url = Some(ws.url.trim().to_owned()).filter(|u| !u.is_empty());
    if let Some(u) = &url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(err(&name, "url scheme must be http or https"));
    }
    let resolve = |inline: &str, file: &str, dir: &str| {
        prompts::resolve(inline, file, src.org_base, dir).map_err(|e| err(&name, e))
    };
    let files = if ws.external {
        Vec::new()
    } else {
        let initial = match resolve(&ws.initial_prompt, &ws.initial_prompt_file, files_dir)? {
            p if p.is_empty() => resolve(&d.initial_prompt, &d.initial_prompt_file, "")?,
            p => p,
        };
        let idle = match resolve(&ws.idle_prompt, &ws.idle_prompt_file, files_dir)? {
            p if p.is_empty() => resolve(&d.idle_prompt, &d.idle_prompt_file, "")?,
            p => p,
        };
        let mut cfg =
            render::default_config(&name, &ws.role, tier.number(), runtime.as_str(), &model);
        render::append_routing(
            &mut cfg,
            &merge_routing(&d.category_routing, &ws.category_routing),
        );
        if !initial.trim().is_empty() {
            render::append_block(&mut cfg, "initial_prompt", &initial);
        }
        if !idle.trim().is_empty() {
            let secs = [ws.idle_interval_seconds, d.idle_interval_seconds]
                .into_iter()
                .find(|s| *s > 0)
                .unwrap_or(600);
            cfg.push_str(&format!("idle_interval_seconds: {secs}\n"));
            render::append_block(&mut cfg, "idle_prompt", &idle);
        }
        workspace_files(
            ws,
            &name,
            runtime.as_str(),
            files_root.as_deref(),
            d,
            src,
            cfg,
        )?
    };
    let schedules = ws
        .schedules
        .iter()
        .filter_map(|s| plan_schedule(s, &name, files_dir, src))
        .collect::<Vec<_>>();
    let (channels, channels_skipped) = plan_channels(ws, &env, src.endpoints);
    let memories = if ws.initial_memories.is_empty() {
        &d.initial_memories
    } else {
        &ws.initial_memories
    };
    let secrets = env
        .into_iter()
        .filter(|(k, _)| validation::env_key(k).is_ok())
        .collect();
    Ok(Node {
        parent,
        new: NewWorkspace {
            name,
            role: Some(ws.role.clone()).filter(|r| !r.is_empty()),
            tier,
            runtime,
            parent_id: None,
            workspace_dir,
            workspace_access: access,
            delivery_mode: DeliveryMode::Push,
            budget_limit: None,
            max_concurrent_tasks: i32::try_from(ws.max_concurrent_tasks)
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or(1),
            hibernation_idle_minutes: None,
        },
        model,
        external: ws.external,
        url,
        abs,
        rel,
        memories: memories
            .iter()
            .map(|m| (m.content.clone(), m.scope.clone()))
            .collect(),
        files,
        secrets,
        schedules,
        channels,
        channels_skipped,
    })
}

/// The files of a workspace: its template (or files_dir) tree, then the plugins, then the
/// generated files on top (the generated `config.yaml` wins).
fn workspace_files(
    ws: &WorkspaceSpec,
    name: &str,
    runtime: &str,
    files_root: Option<&Path>,
    d: &Defaults,
    src: &Sources<'_>,
    config: String,
) -> Result<Vec<(RelPath, Vec<u8>)>, PlanError> {
    let template_dir: Option<PathBuf> = match (files_root, src.configs_dir) {
        (Some(dir), _) => dir.is_dir().then(|| dir.to_owned()),
        (None, Some(configs)) if !ws.template.trim().is_empty() => {
            let t = inside_root(configs, ws.template.trim())
                .map_err(|_| err(name, "template is outside the templates directory"))?;
            t.is_dir().then_some(t)
        }
        (None, Some(configs)) => {
            Some(configs.join(format!("{runtime}-default"))).filter(|p| p.is_dir())
        }
        (None, None) => None,
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(dir) = &template_dir {
        read_tree(dir, "", &mut files).map_err(|e| err(name, e))?;
    }
    for plugin in merge_plugins(&d.plugins, &ws.plugins) {
        plugin_name(&plugin).map_err(|e| err(name, format!("plugin {plugin:?}: {e}")))?;
        let dir = src.plugins_dir.join(&plugin);
        if !dir.is_dir() {
            tracing::warn!(plugin = %plugin, workspace = name, "org import: plugin not in the registry; skipped");
            continue;
        }
        read_tree(&dir, &format!("plugins/{plugin}/"), &mut files).map_err(|e| err(name, e))?;
    }
    if !ws.system_prompt.is_empty() {
        files.insert(
            "system-prompt.md".into(),
            ws.system_prompt.clone().into_bytes(),
        );
    }
    files.insert("config.yaml".into(), config.into_bytes());
    files
        .into_iter()
        .map(|(p, b)| {
            RelPath::parse(&p)
                .map(|r| (r, b))
                .map_err(|_| err(name, format!("invalid file path {p:?}")))
        })
        .collect()
}

/// Reads every regular file under `dir` into `out` as `<prefix><relative path>`; symlinks,
/// `.git` and the root `.env` are skipped; bounded by [`MAX_TREE_BYTES`] and
/// [`MAX_TREE_FILES`].
pub fn read_tree(
    dir: &Path,
    prefix: &str,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let mut stack = vec![(dir.to_owned(), String::new())];
    let mut total: u64 = out.values().map(|v| v.len() as u64).sum();
    while let Some((path, rel)) = stack.pop() {
        let entries =
            std::fs::read_dir(&path).map_err(|_| "template directory unreadable".to_owned())?;
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let Some(fname) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if fname == ".git" || (rel.is_empty() && fname == ".env") {
                continue;
            }
            let child = if rel.is_empty() {
                fname.clone()
            } else {
                format!("{rel}/{fname}")
            };
            if meta.is_dir() {
                stack.push((entry.path(), child));
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
                if total > MAX_TREE_BYTES || out.len() >= MAX_TREE_FILES {
                    return Err("template files are too large".into());
                }
                let bytes = std::fs::read(entry.path())
                    .map_err(|_| "template file unreadable".to_owned())?;
                out.insert(format!("{prefix}{child}"), bytes);
            }
        }
    }
    Ok(())
}

fn plan_schedule(
    s: &super::template::ScheduleSpec,
    ws: &str,
    files_dir: &str,
    src: &Sources<'_>,
) -> Option<PlannedSchedule> {
    let tz = if s.timezone.trim().is_empty() {
        "UTC".to_owned()
    } else {
        s.timezone.trim().to_owned()
    };
    let prompt = match prompts::resolve(&s.prompt, &s.prompt_file, src.org_base, files_dir) {
        Ok(p) if !p.trim().is_empty() => p,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(workspace = ws, schedule = %s.name, error = %e, "org import: schedule skipped");
            return None;
        }
    };
    if s.name.trim().is_empty() {
        return None;
    }
    match crate::scheduler::cron::next_run(s.cron_expr.trim(), &tz, src.now) {
        Ok(next) => Some(PlannedSchedule {
            name: s.name.trim().to_owned(),
            cron_expr: s.cron_expr.trim().to_owned(),
            timezone: tz,
            prompt,
            enabled: s.enabled.unwrap_or(true),
            next_run_at: next,
        }),
        Err(e) => {
            tracing::warn!(workspace = ws, schedule = %s.name, error = %e, "org import: schedule skipped (cron or zone)");
            None
        }
    }
}

type Channels = (Vec<PlannedChannel>, Vec<(String, String)>);

fn plan_channels(
    ws: &WorkspaceSpec,
    env: &BTreeMap<String, String>,
    endpoints: &Endpoints,
) -> Channels {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for c in &ws.channels {
        let t = c.channel_type.trim();
        if t.is_empty() {
            skipped.push((String::new(), "empty type".to_owned()));
            continue;
        }
        let Some(adapter) = crate::channels::adapter(t) else {
            skipped.push((t.to_owned(), "unknown adapter".to_owned()));
            continue;
        };
        let mut config = Map::new();
        let mut missing = Vec::new();
        for (k, v) in &c.config {
            let e = render::expand(v, env);
            if e.had_reference && (e.unresolved || e.text.is_empty()) {
                missing.push(v.clone());
            }
            config.insert(k.clone(), Value::String(e.text));
        }
        if !missing.is_empty() {
            skipped.push((
                t.to_owned(),
                format!("missing env: [{}]", missing.join(" ")),
            ));
            continue;
        }
        if let Err(e) = adapter.validate_config(endpoints, &config) {
            skipped.push((t.to_owned(), e.to_string()));
            continue;
        }
        ok.push(PlannedChannel {
            channel_type: t.to_owned(),
            config,
            sensitive: adapter
                .config_schema()
                .iter()
                .filter(|f| f.sensitive)
                .map(|f| f.key.to_owned())
                .collect(),
            allowed_users: c.allowed_users.clone(),
            enabled: c.enabled.unwrap_or(true),
        });
    }
    (ok, skipped)
}
