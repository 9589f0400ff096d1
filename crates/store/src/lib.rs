//! Persistence for molecule-rs: one repository API over PostgreSQL and SQLite.
//!
//! [`Store::connect`] opens the database a [`DatabaseUrl`] names, applies the embedded migrations
//! of the top-level `migrations/` folder and hands out repositories: [`Workspaces`],
//! [`WorkspaceTokens`], [`Activity`], [`Queue`], [`Memories`] and the others below. Every query is written once per dialect where the dialects differ, and
//! bound and decoded through the same code for both, so the two backends cannot drift apart;
//! the conformance suite in `tests/` runs every repository test against both.

#[macro_use]
mod db;
mod activity;
mod agents;
mod approvals;
mod audit;
mod canvas;
mod channels;
mod checkpoints;
mod cipher;
mod error;
mod events;
mod fts;
mod hierarchy;
mod instructions;
mod kv;
mod layouts;
mod listen;
mod liveness;
mod memories;
mod memory_backup;
mod migrate;
mod org_tokens;
mod plugin_allowlist;
pub mod private;
mod queue;
mod redact;
mod registry;
mod schedule_runs;
mod schedules;
mod secrets;
mod tasks;
mod tokens;
mod types;
mod url;
mod usage;
mod workspaces;
mod write_behind;

#[cfg(feature = "testing")]
pub mod testing;

pub use activity::{
    Activity, ActivityQuery, ActivityRow, DELEGATION_TYPE, DelegationChange, METHOD_DELEGATE,
    METHOD_DELEGATE_RESULT, NewActivity, SourceFilter,
};
pub use agents::{AgentRecord, AgentRefusal, Agents};
pub use approvals::{APPROVAL_LIST_LIMIT, Approval, Approvals, NewApproval, Undecided};
pub use audit::{Audit, AuditEvent, AuditQuery};
pub use canvas::{Canvas, VIEWPORT_ID, Viewport};
pub use channels::{Channel, ChannelUpdate, Channels, HISTORY_KEEP, NewChannel};
pub use checkpoints::{Checkpoint, Checkpoints};
pub use cipher::{
    CipherError, KeyError, Secret, SecretKey, TEXT_PREFIX, VERSION_AES_GCM, VERSION_PLAINTEXT,
};
pub use error::{ConnectError, StoreError};
pub use events::{Events, StoredEvent};
pub use hierarchy::MAX_ANCESTOR_HOPS;
pub use instructions::{Instruction, InstructionUpdate, Instructions, NewInstruction};
pub use kv::{KvEntry, KvMemory, KvWrite};
pub use layouts::{Layout, Layouts};
pub use listen::{EventListener, MAX_NOTIFY_BYTES};
pub use memories::{Committed, Memories, Memory, NewMemory, RecallFilter};
pub use memory_backup::{ExportedMemory, ImportEntry, ImportReport};
pub use org_tokens::{IssuedOrgToken, ORG_TOKEN_LIST_LIMIT, OrgIdentity, OrgToken, OrgTokens};
pub use plugin_allowlist::{AllowedPlugin, PluginAllowlist};
pub use queue::{
    Enqueued, NewQueueItem, PRIORITY_CRITICAL, PRIORITY_INFO, PRIORITY_TASK, Queue, QueueItem,
    QueueStatus,
};
pub use redact::{Redacted, redact_secrets};
pub use registry::{CACHE_CHANNEL, DEFAULT_CACHE_TTL};
pub use schedule_runs::{Claim, RunOutcome, STALE_AFTER_EMPTY_RUNS};
pub use schedules::{
    CRON_RUN_TYPE, CronRun, NewSchedule, Schedule, ScheduleUpdate, ScheduleWithWorkspace, Schedules,
};
pub use secrets::{SecretInfo, SecretRead, Secrets};
pub use tokens::{IssuedToken, PlainToken, TokenInfo, WorkspaceTokens, random_token};
pub use url::{Backend, DatabaseUrl, prepare_data_dir};
pub use usage::{DailyUsage, Usage, UsageDelta, day_start};
pub use workspaces::{
    Heartbeat, NewWorkspace, Routing, StatusChange, Transition, Workspace, WorkspaceUpdate,
    Workspaces,
};
pub use write_behind::{ActivityHook, WriteBehindSettings};

use std::sync::Arc;
use std::time::Duration;

use db::Db;
use registry::Registry;
use write_behind::WriteBehind;

/// A handle on the database: cheap to clone, shared by every repository.
#[derive(Clone, Debug)]
pub struct Store {
    db: db::Pool,
    key: Option<Arc<SecretKey>>,
    hot: Arc<Hot>,
}

/// What the hot paths use instead of a database round trip: the registry cache and the
/// group-commit writer, with the tasks that keep them.
#[derive(Debug)]
pub(crate) struct Hot {
    pub(crate) registry: Arc<Registry>,
    pub(crate) behind: Arc<WriteBehind>,
    tasks: tasks::Tasks,
}

/// How a store caches and batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// The group-commit writer's bounds.
    pub write_behind: WriteBehindSettings,
    /// How long a cache entry is trusted without reading it again.
    pub cache_ttl: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            write_behind: WriteBehindSettings::default(),
            cache_ttl: DEFAULT_CACHE_TTL,
        }
    }
}

impl Store {
    /// Connects to the database, creating a SQLite file (and its directory) if missing, and
    /// applies the migrations.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, ConnectError> {
        Self::connect_with(url, StoreSettings::default()).await
    }

    /// [`Store::connect`] with explicit cache and writer settings. Starts the group-commit
    /// writer and, on PostgreSQL, the cache listener (the cache is bypassed until it listens).
    pub async fn connect_with(
        url: &DatabaseUrl,
        settings: StoreSettings,
    ) -> Result<Self, ConnectError> {
        let db = db::connect(url).await?;
        migrate::run(&db).await?;
        let registry = Arc::new(Registry::new(matches!(db, Db::Sqlite(_))));
        registry.set_ttl(settings.cache_ttl);
        let behind = Arc::new(WriteBehind::new(settings.write_behind));
        let hot = Arc::new(Hot {
            registry,
            behind,
            tasks: tasks::Tasks::default(),
        });
        let (writer, pool) = (Arc::clone(&hot.behind), db.clone());
        hot.tasks.spawn("write-behind", move || {
            Arc::clone(&writer).run(pool.clone())
        });
        if let Db::Postgres(pool) = &db {
            let (registry, pool) = (Arc::clone(&hot.registry), pool.clone());
            hot.tasks.spawn("cache-listener", move || {
                registry::listen(pool.clone(), Arc::clone(&registry))
            });
        }
        Ok(Self { db, key: None, hot })
    }

    /// Sets the hook called with each activity row the group-commit writer committed (the
    /// server broadcasts `ACTIVITY_LOGGED` from it).
    pub fn on_activity_stored(&self, hook: ActivityHook) {
        self.hot.behind.set_hook(hook);
    }

    /// Waits until every write queued before this call (activity rows, heartbeats, times) is
    /// committed.
    pub async fn flush(&self) {
        self.hot.behind.barrier().await;
    }

    /// When the group-commit writer last completed a pass (a commit or an idle tick).
    pub fn last_flush(&self) -> Option<time::OffsetDateTime> {
        self.hot.behind.last_flush()
    }

    /// Whether the registry cache serves reads now (on PostgreSQL: while its listener
    /// listens).
    pub fn cache_trusted(&self) -> bool {
        self.hot.registry.is_trusted()
    }

    /// Queues a notification on `channel` for the other replicas, sent after the next
    /// group commit (PostgreSQL; nothing on SQLite).
    pub fn notify_later(&self, channel: &str, payload: String) {
        if matches!(self.db, Db::Postgres(_)) {
            self.hot.behind.notify(channel, payload);
        }
    }

    /// The same store encrypting secret values with `key` (`None`: stored as plaintext,
    /// version 0). Values already stored are read by their own `encryption_version`.
    pub fn with_secret_key(mut self, key: Option<SecretKey>) -> Self {
        self.key = key.map(std::sync::Arc::new);
        self
    }

    /// Whether secret values are encrypted at rest.
    pub fn encrypts_secrets(&self) -> bool {
        self.key.is_some()
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let one: i32 =
            db_query!(self.db.exec(), query_scalar::<i32>, db::Sql::same("SELECT 1"); fetch_one)?;
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// The workspaces repository.
    pub fn workspaces(&self) -> Workspaces<'_> {
        Workspaces::new(&self.db, self.key.as_deref(), &self.hot)
    }

    /// The agent model records.
    pub fn agents(&self) -> Agents<'_> {
        Agents::new(&self.db)
    }

    /// The audit ledger.
    pub fn audit(&self) -> Audit<'_> {
        Audit::new(&self.db)
    }

    /// Token usage per workspace and day.
    pub fn usage(&self) -> Usage<'_> {
        Usage::new(&self.db)
    }

    /// The scoped agent memories (and their backup).
    pub fn memories(&self) -> Memories<'_> {
        Memories::new(&self.db)
    }

    /// The key/value memory.
    pub fn kv_memory(&self) -> KvMemory<'_> {
        KvMemory::new(&self.db)
    }

    /// The workflow checkpoints.
    pub fn checkpoints(&self) -> Checkpoints<'_> {
        Checkpoints::new(&self.db)
    }

    /// The platform instructions.
    pub fn instructions(&self) -> Instructions<'_> {
        Instructions::new(&self.db)
    }

    /// The approval requests.
    pub fn approvals(&self) -> Approvals<'_> {
        Approvals::new(&self.db)
    }

    /// The canvas viewport and workspace config blobs.
    pub fn canvas(&self) -> Canvas<'_> {
        Canvas::new(&self.db)
    }

    /// Canvas positions.
    pub fn layouts(&self) -> Layouts<'_> {
        Layouts::new(&self.db)
    }

    /// The structure event log.
    pub fn events(&self) -> Events<'_> {
        Events::new(&self.db)
    }

    /// The workspace and global secrets.
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets::new(&self.db, self.key.as_deref())
    }

    /// The chat channels, their sensitive config sealed with the secrets key.
    pub fn channels(&self) -> Channels<'_> {
        Channels::new(&self.db, self.key.as_deref())
    }

    /// The per-org plugin allowlists.
    pub fn plugin_allowlist(&self) -> PluginAllowlist<'_> {
        PluginAllowlist::new(&self.db)
    }

    /// The org API tokens.
    pub fn org_tokens(&self) -> OrgTokens<'_> {
        OrgTokens::new(&self.db)
    }

    /// The activity log.
    pub fn activity(&self) -> Activity<'_> {
        Activity::new(&self.db, &self.hot)
    }

    /// The A2A queue.
    pub fn queue(&self) -> Queue<'_> {
        Queue::new(&self.db, &self.hot)
    }

    /// The cron schedules and their history.
    pub fn schedules(&self) -> Schedules<'_> {
        Schedules::new(&self.db, &self.hot)
    }

    /// The workspace auth tokens repository.
    pub fn tokens(&self) -> WorkspaceTokens<'_> {
        WorkspaceTokens::new(&self.db, &self.hot)
    }

    /// A listener on the notification `channel`, on PostgreSQL; `None` on SQLite, which has
    /// no other process to hear from.
    pub async fn event_listener(&self, channel: &str) -> Result<Option<EventListener>, StoreError> {
        match &self.db {
            Db::Postgres(p) => Ok(Some(EventListener::connect(p, channel).await?)),
            Db::Sqlite(_) => Ok(None),
        }
    }

    /// Writes everything the group-commit writer holds, stops the store's tasks and closes
    /// every pooled connection.
    pub async fn close(&self) {
        self.hot.behind.barrier().await;
        self.hot.tasks.stop().await;
        self.hot.behind.drain(&self.db).await;
        self.hot.registry.distrust();
        match &self.db {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
    }
}
