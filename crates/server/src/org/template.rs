//! The shape of an org template (`org.yaml`, or the inline JSON of `POST /org/import`), env
//! requirement collection (§1.3 `collect`) and the plugin/routing merges.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An org template. Unknown keys are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OrgTemplate {
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Defaults for every workspace.
    pub defaults: Defaults,
    /// The root workspaces.
    pub workspaces: Vec<WorkspaceSpec>,
    /// Memories seeded GLOBAL on the first created workspace.
    pub global_memories: Vec<MemorySpec>,
    /// Env vars the org needs.
    pub required_env: Vec<EnvRequirement>,
    /// Env vars the org can use.
    pub recommended_env: Vec<EnvRequirement>,
}

/// The `defaults` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Defaults {
    /// Runtime.
    pub runtime: String,
    /// Tier.
    pub tier: i64,
    /// Model.
    pub model: String,
    /// Plugins of every workspace.
    pub plugins: Vec<String>,
    /// Initial prompt, inline.
    pub initial_prompt: String,
    /// Initial prompt, a file.
    pub initial_prompt_file: String,
    /// Idle prompt, inline.
    pub idle_prompt: String,
    /// Idle prompt, a file.
    pub idle_prompt_file: String,
    /// Idle interval.
    pub idle_interval_seconds: i64,
    /// Category routing.
    pub category_routing: BTreeMap<String, Vec<String>>,
    /// Memories of every workspace that has none.
    pub initial_memories: Vec<MemorySpec>,
}

/// A memory to seed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MemorySpec {
    /// The text.
    pub content: String,
    /// `LOCAL`, `TEAM` or `GLOBAL` (any case; empty is LOCAL).
    pub scope: String,
}

/// A cron schedule of a workspace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ScheduleSpec {
    /// Unique per workspace.
    pub name: String,
    /// Cron expression.
    pub cron_expr: String,
    /// IANA zone (default UTC).
    pub timezone: String,
    /// Prompt, inline.
    pub prompt: String,
    /// Prompt, a file under the workspace's files_dir.
    pub prompt_file: String,
    /// Default true.
    pub enabled: Option<bool>,
}

/// A chat channel of a workspace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChannelSpec {
    /// Adapter type.
    #[serde(rename = "type")]
    pub channel_type: String,
    /// Adapter config (values may reference `${VAR}`).
    pub config: BTreeMap<String, String>,
    /// Allowed users.
    pub allowed_users: Vec<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Canvas coordinates.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct CanvasSpec {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
}

/// One workspace of the tree.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkspaceSpec {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Runtime.
    pub runtime: String,
    /// Tier.
    pub tier: i64,
    /// Workspace template directory under CONFIGS_DIR.
    pub template: String,
    /// Directory under the org template with this workspace's files.
    pub files_dir: String,
    /// System prompt, inline.
    pub system_prompt: String,
    /// Model.
    pub model: String,
    /// Host directory to mount (`${VAR}` allowed).
    pub workspace_dir: String,
    /// `none`, `read_only`, `read_write`.
    pub workspace_access: String,
    /// Plugins (`!x`/`-x` removes a default).
    pub plugins: Vec<String>,
    /// Initial prompt, inline.
    pub initial_prompt: String,
    /// Initial prompt, a file.
    pub initial_prompt_file: String,
    /// Idle prompt, inline.
    pub idle_prompt: String,
    /// Idle prompt, a file.
    pub idle_prompt_file: String,
    /// Idle interval.
    pub idle_interval_seconds: i64,
    /// Category routing overrides.
    pub category_routing: BTreeMap<String, Vec<String>>,
    /// Memories to seed.
    pub initial_memories: Vec<MemorySpec>,
    /// Concurrent task limit.
    pub max_concurrent_tasks: i64,
    /// Cron schedules.
    pub schedules: Vec<ScheduleSpec>,
    /// Chat channels.
    pub channels: Vec<ChannelSpec>,
    /// An external workspace (no provisioning).
    pub external: bool,
    /// Its URL when external.
    pub url: String,
    /// Canvas position (roots).
    pub canvas: CanvasSpec,
    /// Env vars this workspace needs.
    pub required_env: Vec<EnvRequirement>,
    /// Env vars this workspace can use.
    pub recommended_env: Vec<EnvRequirement>,
    /// Sub-workspaces.
    pub children: Vec<WorkspaceSpec>,
}

impl WorkspaceSpec {
    /// This node and every descendant, pre-order.
    pub fn count(&self) -> usize {
        1usize.saturating_add(self.children.iter().map(Self::count).sum::<usize>())
    }
}

impl OrgTemplate {
    /// Every workspace of the tree.
    pub fn count(&self) -> usize {
        self.workspaces.iter().map(WorkspaceSpec::count).sum()
    }
}

/// An env requirement: one name (strict) or any one of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvRequirement {
    /// This variable.
    Name(String),
    /// Any one of these.
    AnyOf(Vec<String>),
}

impl<'de> Deserialize<'de> for EnvRequirement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self::Name(s)),
            Value::Object(map) if map.len() == 1 => match map.get("any_of") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(Self::AnyOf)
                    .ok_or_else(|| de::Error::custom("any_of members must be strings")),
                _ => Err(de::Error::custom("any_of must be a non-empty list")),
            },
            _ => Err(de::Error::custom(
                "env requirement must be a name or {any_of: [...]}",
            )),
        }
    }
}

impl Serialize for EnvRequirement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Name(n) => s.serialize_str(n),
            Self::AnyOf(m) => json!({ "any_of": m }).serialize(s),
        }
    }
}

impl EnvRequirement {
    fn members(&self) -> Vec<String> {
        match self {
            Self::Name(n) => vec![n.clone()],
            Self::AnyOf(m) => m.clone(),
        }
    }

    /// Whether `have` satisfies it.
    pub fn satisfied_by(&self, have: &BTreeSet<String>) -> bool {
        self.members().iter().any(|m| have.contains(m))
    }
}

/// The env-var name guard (§1.0.9): `^[A-Z][A-Z0-9_]{0,127}$`.
pub fn env_name_ok(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_uppercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
}

/// Deduplicated, filtered requirements of one tier (steps 1–2), in first-seen order.
fn gather<'a>(
    lists: impl Iterator<Item = &'a Vec<EnvRequirement>>,
) -> Vec<(String, EnvRequirement)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for req in lists.flatten() {
        let mut members: Vec<String> = req
            .members()
            .into_iter()
            .filter(|m| env_name_ok(m))
            .collect();
        if members.is_empty() {
            continue;
        }
        let entry = match req {
            EnvRequirement::Name(_) => EnvRequirement::Name(members.remove(0)),
            EnvRequirement::AnyOf(_) => EnvRequirement::AnyOf(members.clone()),
        };
        let mut sorted = entry.members();
        sorted.sort();
        let key = sorted.join("\0");
        if seen.insert(key.clone()) {
            out.push((key, entry));
        }
    }
    out
}

fn walk<'a>(ws: &'a WorkspaceSpec, out: &mut Vec<&'a WorkspaceSpec>) {
    out.push(ws);
    for c in &ws.children {
        walk(c, out);
    }
}

/// `collect(tmpl)` → (required, recommended), spec §1.3.
pub fn collect(t: &OrgTemplate) -> (Vec<EnvRequirement>, Vec<EnvRequirement>) {
    let mut nodes = Vec::new();
    for ws in &t.workspaces {
        walk(ws, &mut nodes);
    }
    let required =
        gather(std::iter::once(&t.required_env).chain(nodes.iter().map(|n| &n.required_env)));
    let recommended =
        gather(std::iter::once(&t.recommended_env).chain(nodes.iter().map(|n| &n.recommended_env)));
    let strict = |list: &[(String, EnvRequirement)]| -> BTreeSet<String> {
        list.iter()
            .filter_map(|(_, r)| match r {
                EnvRequirement::Name(n) => Some(n.clone()),
                EnvRequirement::AnyOf(_) => None,
            })
            .collect()
    };
    let req_strict = strict(&required);
    let rec_strict = strict(&recommended);
    let finish = |list: Vec<(String, EnvRequirement)>,
                  same: &BTreeSet<String>,
                  cross: Option<&BTreeSet<String>>| {
        let mut kept: Vec<(String, EnvRequirement)> = list
            .into_iter()
            .filter(|(key, r)| {
                if cross.is_some_and(|c| r.members().iter().any(|m| c.contains(m))) {
                    return false;
                }
                match r {
                    EnvRequirement::AnyOf(m) => !m.iter().any(|x| same.contains(x)),
                    EnvRequirement::Name(_) => !key.is_empty(),
                }
            })
            .collect();
        kept.sort_by(|(ka, a), (kb, b)| {
            let rank = |r: &EnvRequirement| matches!(r, EnvRequirement::AnyOf(_));
            rank(a).cmp(&rank(b)).then_with(|| ka.cmp(kb))
        });
        kept.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
    };
    let recommended = finish(recommended, &rec_strict, Some(&req_strict));
    let required = finish(required, &req_strict, None);
    (required, recommended)
}

/// `merge_plugins(defaults, ws)`, spec §1.3.
pub fn merge_plugins(defaults: &[String], ws: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in defaults {
        if !d.is_empty() && !out.contains(d) {
            out.push(d.clone());
        }
    }
    for w in ws {
        let target = w.trim_start_matches(['!', '-']);
        if target.len() != w.len() {
            if !target.is_empty() {
                out.retain(|p| p != target);
            }
        } else if !w.is_empty() && !out.contains(w) {
            out.push(w.clone());
        }
    }
    out
}

/// `merge_routing(defaults, ws)`, spec §1.3.
pub fn merge_routing(
    defaults: &BTreeMap<String, Vec<String>>,
    ws: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = defaults
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in ws {
        if v.is_empty() {
            out.remove(k);
        } else if !k.is_empty() {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn plugins_merge() {
        assert_eq!(
            merge_plugins(&s(&["a", "b"]), &s(&["c"])),
            s(&["a", "b", "c"])
        );
        assert_eq!(
            merge_plugins(&s(&["a", "b"]), &s(&["b", "c"])),
            s(&["a", "b", "c"])
        );
        assert_eq!(
            merge_plugins(&s(&["a", "b", "c"]), &s(&["!b", "d"])),
            s(&["a", "c", "d"])
        );
        assert_eq!(merge_plugins(&s(&["a", "b"]), &s(&["-a"])), s(&["b"]));
    }

    #[test]
    fn env_collection() {
        let t: OrgTemplate = serde_json::from_value(json!({
            "required_env": ["B_KEY", "A_KEY", "lowercase_bad", {"any_of": ["X", "A_KEY"]}, "B_KEY"],
            "recommended_env": ["A_KEY", "R", {"any_of": ["S", "T"]}, {"any_of": ["T", "S"]}],
            "workspaces": [{"name": "w", "required_env": ["../../etc/passwd", "C"],
                "children": [{"name": "c", "recommended_env": ["WITH-DASH", "A"]}]}]
        }))
        .unwrap();
        let (req, rec) = collect(&t);
        let r = serde_json::to_value(&req).unwrap();
        assert_eq!(r, json!(["A_KEY", "B_KEY", "C"]));
        let r = serde_json::to_value(&rec).unwrap();
        assert_eq!(r, json!(["A", "R", {"any_of": ["S", "T"]}]));
    }

    #[test]
    fn any_of_shapes() {
        assert!(serde_json::from_value::<EnvRequirement>(json!({"any_of": []})).is_err());
        assert!(serde_json::from_value::<EnvRequirement>(json!(3)).is_err());
        let g: EnvRequirement = serde_json::from_value(json!({"any_of": ["A", "B"]})).unwrap();
        let have: BTreeSet<String> = ["B".to_owned()].into();
        assert!(g.satisfied_by(&have));
        assert!(!EnvRequirement::Name("Z".into()).satisfied_by(&have));
    }
}
