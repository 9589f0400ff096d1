//! A workspace as the store hands it out and takes it in: the row, what a new one is made
//! of, the changes an update applies, and how the columns decode from either backend.

use molecule_domain::{DeliveryMode, Runtime, Tier, WorkspaceAccess, WorkspaceId, WorkspaceStatus};
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::types::{DbStatus, DbText, DbTime, DbUuid};

/// A workspace row. The platform's inbound secret is not part of it: secrets are read on
/// their own, by the code that needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    /// Its id.
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// Free-text role given to the agent.
    pub role: Option<String>,
    /// Tier number as stored (1 to 4 for rows this server wrote).
    pub tier: i32,
    /// Current status.
    pub status: WorkspaceStatus,
    /// The agent's A2A endpoint.
    pub url: Option<String>,
    /// The agent card sent at registration.
    pub agent_card: Option<Value>,
    /// Parent in the hierarchy.
    pub parent_id: Option<WorkspaceId>,
    /// Where traffic for this workspace is forwarded.
    pub forwarded_to: Option<WorkspaceId>,
    /// The bundle this workspace was imported from.
    pub source_bundle_id: Option<String>,
    /// Push or poll delivery of A2A messages.
    pub delivery_mode: DeliveryMode,
    /// Last heartbeat received.
    pub last_heartbeat_at: Option<OffsetDateTime>,
    /// Error rate of the last heartbeat.
    pub last_error_rate: f64,
    /// Last error sample, or the reason provisioning failed.
    pub last_sample_error: Option<String>,
    /// Tasks in progress by the last heartbeat.
    pub active_tasks: i32,
    /// Agent uptime by the last heartbeat.
    pub uptime_seconds: i32,
    /// What the agent said it is doing.
    pub current_task: Option<String>,
    /// Last outbound A2A call made by this workspace.
    pub last_outbound_at: Option<OffsetDateTime>,
    /// When the workspace last did work (a task in progress, an A2A message).
    pub last_activity_at: Option<OffsetDateTime>,
    /// Memory namespace, `workspace:<id>`.
    pub awareness_namespace: Option<String>,
    /// Runtime name as stored.
    pub runtime: String,
    /// Host directory mounted at `/workspace`.
    pub workspace_dir: Option<String>,
    /// Access mode of that directory.
    pub workspace_access: WorkspaceAccess,
    /// How many tasks the agent accepts at once.
    pub max_concurrent_tasks: i32,
    /// The backend's instance id (EC2).
    pub instance_id: Option<String>,
    /// The image digest the workspace runs.
    pub runtime_image_digest: Option<String>,
    /// Monthly budget in USD cents; `None` is unlimited.
    pub budget_limit: Option<i64>,
    /// Spend this month in USD cents.
    pub monthly_spend: i64,
    /// Idle minutes before hibernation; `None` disables it.
    pub hibernation_idle_minutes: Option<i32>,
    /// When the row was created.
    pub created_at: OffsetDateTime,
    /// When the row last changed.
    pub updated_at: OffsetDateTime,
}

/// What a new workspace is made of. The store assigns `status = provisioning`.
#[derive(Debug, Clone)]
pub struct NewWorkspace {
    /// Display name (validated by the caller with `molecule_domain::validation`).
    pub name: String,
    /// Role, `None` for none.
    pub role: Option<String>,
    /// Tier.
    pub tier: Tier,
    /// Runtime.
    pub runtime: Runtime,
    /// Parent; must exist and not be removed.
    pub parent_id: Option<WorkspaceId>,
    /// Host directory.
    pub workspace_dir: Option<String>,
    /// Host directory access mode.
    pub workspace_access: WorkspaceAccess,
    /// Delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Monthly budget in cents.
    pub budget_limit: Option<i64>,
    /// Concurrent task limit (at least 1).
    pub max_concurrent_tasks: i32,
    /// Idle minutes before hibernation.
    pub hibernation_idle_minutes: Option<i32>,
}

impl NewWorkspace {
    /// A workspace with this name and every other field at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: None,
            tier: Tier::DEFAULT,
            runtime: Runtime::default_runtime(),
            parent_id: None,
            workspace_dir: None,
            workspace_access: WorkspaceAccess::None,
            delivery_mode: DeliveryMode::Push,
            budget_limit: None,
            max_concurrent_tasks: 1,
            hibernation_idle_minutes: None,
        }
    }
}

/// Changes to a workspace, applied together or not at all. `None` leaves a field as it is;
/// `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceUpdate {
    /// New name.
    pub name: Option<String>,
    /// New role, or cleared.
    pub role: Option<Option<String>>,
    /// New tier.
    pub tier: Option<Tier>,
    /// New runtime.
    pub runtime: Option<Runtime>,
    /// New parent, or made a root. Refused if it would create a cycle.
    pub parent_id: Option<Option<WorkspaceId>>,
    /// New host directory, or cleared.
    pub workspace_dir: Option<Option<String>>,
    /// New host directory access mode.
    pub workspace_access: Option<WorkspaceAccess>,
    /// New delivery mode.
    pub delivery_mode: Option<DeliveryMode>,
    /// New budget, or unlimited.
    pub budget_limit: Option<Option<i64>>,
    /// New concurrent task limit.
    pub max_concurrent_tasks: Option<i32>,
    /// New hibernation idle minutes, or disabled.
    pub hibernation_idle_minutes: Option<Option<i32>>,
    /// New canvas position.
    pub position: Option<(f64, f64)>,
    /// New collapsed flag of the canvas node.
    pub collapsed: Option<bool>,
}

/// A status change that was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status before.
    pub from: WorkspaceStatus,
    /// The status after.
    pub to: WorkspaceStatus,
}

/// Columns written together with a status change.
#[derive(Debug, Clone, Default)]
pub struct StatusChange {
    /// `Some(url)` sets the URL (`Some(None)` clears it); `None` leaves it.
    pub url: Option<Option<String>>,
    /// `Some(reason)` sets `last_sample_error`.
    pub last_sample_error: Option<String>,
}

impl StatusChange {
    /// Clears the URL (the agent is gone or going).
    pub fn clear_url() -> Self {
        Self {
            url: Some(None),
            last_sample_error: None,
        }
    }

    /// Records why the workspace failed.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            url: None,
            last_sample_error: Some(reason.into()),
        }
    }
}

/// Every column, in the order of [`Row`].
pub(crate) const COLUMNS: &str = "id, name, role, tier, status, url, agent_card, parent_id, forwarded_to, \
    source_bundle_id, delivery_mode, last_heartbeat_at, last_error_rate, last_sample_error, \
    active_tasks, uptime_seconds, current_task, last_outbound_at, last_activity_at, \
    awareness_namespace, runtime, \
    workspace_dir, workspace_access, max_concurrent_tasks, instance_id, runtime_image_digest, \
    budget_limit, monthly_spend, hibernation_idle_minutes, created_at, updated_at";

/// The columns as decoded from either backend. Nullable where the reference schema is.
#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: DbUuid,
    name: String,
    role: Option<String>,
    tier: Option<i32>,
    status: Option<DbStatus>,
    url: Option<String>,
    agent_card: Option<Json<Value>>,
    parent_id: Option<DbUuid>,
    forwarded_to: Option<DbUuid>,
    source_bundle_id: Option<String>,
    delivery_mode: DbText<DeliveryMode>,
    last_heartbeat_at: Option<DbTime>,
    last_error_rate: Option<f64>,
    last_sample_error: Option<String>,
    active_tasks: Option<i32>,
    uptime_seconds: Option<i32>,
    current_task: Option<String>,
    last_outbound_at: Option<DbTime>,
    last_activity_at: Option<DbTime>,
    awareness_namespace: Option<String>,
    runtime: Option<String>,
    workspace_dir: Option<String>,
    workspace_access: DbText<WorkspaceAccess>,
    max_concurrent_tasks: i32,
    instance_id: Option<String>,
    runtime_image_digest: Option<String>,
    budget_limit: Option<i64>,
    monthly_spend: i64,
    hibernation_idle_minutes: Option<i32>,
    created_at: Option<DbTime>,
    updated_at: Option<DbTime>,
}

impl From<Row> for Workspace {
    fn from(r: Row) -> Self {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        Workspace {
            id: r.id.into(),
            name: r.name,
            role: r.role,
            tier: r.tier.unwrap_or(1),
            // The reference column is nullable; its default is provisioning.
            status: r.status.map_or(WorkspaceStatus::Provisioning, |s| s.0),
            url: r.url,
            agent_card: r.agent_card.map(|j| j.0),
            parent_id: r.parent_id.map(Into::into),
            forwarded_to: r.forwarded_to.map(Into::into),
            source_bundle_id: r.source_bundle_id,
            delivery_mode: r.delivery_mode.0,
            last_heartbeat_at: r.last_heartbeat_at.map(|t| t.0),
            last_error_rate: r.last_error_rate.unwrap_or(0.0),
            last_sample_error: r.last_sample_error,
            active_tasks: r.active_tasks.unwrap_or(0),
            uptime_seconds: r.uptime_seconds.unwrap_or(0),
            current_task: r.current_task,
            last_outbound_at: r.last_outbound_at.map(|t| t.0),
            last_activity_at: r.last_activity_at.map(|t| t.0),
            awareness_namespace: r.awareness_namespace,
            runtime: r.runtime.unwrap_or_else(|| Runtime::DEFAULT.to_owned()),
            workspace_dir: r.workspace_dir,
            workspace_access: r.workspace_access.0,
            max_concurrent_tasks: r.max_concurrent_tasks,
            instance_id: r.instance_id,
            runtime_image_digest: r.runtime_image_digest,
            budget_limit: r.budget_limit,
            monthly_spend: r.monthly_spend,
            hibernation_idle_minutes: r.hibernation_idle_minutes,
            created_at: r.created_at.map_or(epoch, |t| t.0),
            updated_at: r.updated_at.map_or(epoch, |t| t.0),
        }
    }
}

/// Applies the changes of an update to the row read under its lock.
pub(super) fn apply(ws: &mut Workspace, c: WorkspaceUpdate) {
    if let Some(v) = c.name {
        ws.name = v;
    }
    if let Some(v) = c.role {
        ws.role = v.filter(|r| !r.is_empty());
    }
    if let Some(v) = c.tier {
        ws.tier = v.number();
    }
    if let Some(v) = c.runtime {
        ws.runtime = v.as_str().to_owned();
    }
    if let Some(v) = c.parent_id {
        ws.parent_id = v;
    }
    if let Some(v) = c.workspace_dir {
        ws.workspace_dir = v.filter(|d| !d.is_empty());
    }
    if let Some(v) = c.workspace_access {
        ws.workspace_access = v;
    }
    if let Some(v) = c.delivery_mode {
        ws.delivery_mode = v;
    }
    if let Some(v) = c.budget_limit {
        ws.budget_limit = v;
    }
    if let Some(v) = c.max_concurrent_tasks {
        ws.max_concurrent_tasks = v.max(1);
    }
    if let Some(v) = c.hibernation_idle_minutes {
        ws.hibernation_idle_minutes = v;
    }
}

/// A workspace as the hot paths read it (from the registry cache).
#[derive(Debug, Clone)]
pub struct Routing {
    /// The row.
    pub workspace: Workspace,
    /// The inbound secret the agent's heartbeat answer carries, if any.
    pub inbound_secret: Option<String>,
}

/// The fields of one heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    /// Share of failed tasks.
    pub error_rate: f64,
    /// Last error text.
    pub sample_error: Option<String>,
    /// Tasks in progress.
    pub active_tasks: i32,
    /// Agent uptime.
    pub uptime_seconds: i32,
    /// What the agent is doing.
    pub current_task: Option<String>,
    /// Spend this month in cents; `None` (or 0) leaves the stored value.
    pub monthly_spend: Option<i64>,
}

/// `ws` as a heartbeat received at `at` leaves it (the columns the writer sets).
pub(crate) fn overlay(ws: &mut Workspace, hb: &Heartbeat, at: OffsetDateTime) {
    ws.last_heartbeat_at = Some(at);
    ws.last_error_rate = hb.error_rate;
    ws.last_sample_error = hb.sample_error.clone();
    ws.active_tasks = hb.active_tasks;
    ws.uptime_seconds = hb.uptime_seconds;
    ws.current_task = hb.current_task.clone();
    if let Some(spend) = hb.monthly_spend.filter(|s| *s > 0) {
        ws.monthly_spend = spend;
    }
    ws.updated_at = at;
    if hb.active_tasks > 0 {
        ws.last_activity_at = Some(at);
    }
}
