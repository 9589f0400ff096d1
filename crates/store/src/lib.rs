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
pub mod private;
mod queue;
mod redact;
mod schedule_runs;
mod schedules;
mod secrets;
mod tokens;
mod types;
mod url;
mod usage;
mod workspaces;

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
pub use liveness::Heartbeat;
pub use memories::{Committed, Memories, Memory, NewMemory, RecallFilter};
pub use memory_backup::{ExportedMemory, ImportEntry, ImportReport};
pub use org_tokens::{IssuedOrgToken, ORG_TOKEN_LIST_LIMIT, OrgIdentity, OrgToken, OrgTokens};
pub use queue::{
    Enqueued, NewQueueItem, PRIORITY_CRITICAL, PRIORITY_INFO, PRIORITY_TASK, Queue, QueueItem,
    QueueStatus,
};
pub use redact::{Redacted, redact_secrets};
pub use schedule_runs::{Claim, RunOutcome, STALE_AFTER_EMPTY_RUNS};
pub use schedules::{
    CRON_RUN_TYPE, CronRun, NewSchedule, Schedule, ScheduleUpdate, ScheduleWithWorkspace, Schedules,
};
pub use secrets::{SecretInfo, SecretRead, Secrets};
pub use tokens::{IssuedToken, PlainToken, TokenInfo, WorkspaceTokens, random_token};
pub use url::{Backend, DatabaseUrl, prepare_data_dir};
pub use usage::{DailyUsage, Usage, UsageDelta, day_start};
pub use workspaces::{
    NewWorkspace, StatusChange, Transition, Workspace, WorkspaceUpdate, Workspaces,
};

use db::Db;

/// A handle on the database: cheap to clone, shared by every repository.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db<sqlx::PgPool, sqlx::SqlitePool>,
    key: Option<std::sync::Arc<SecretKey>>,
}

impl Store {
    /// Connects to the database, creating a SQLite file (and its directory) if missing, and
    /// applies the migrations.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, ConnectError> {
        let db = db::connect(url).await?;
        migrate::run(&db).await?;
        Ok(Self { db, key: None })
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
        Workspaces::new(&self.db, self.key.as_deref())
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

    /// The org API tokens.
    pub fn org_tokens(&self) -> OrgTokens<'_> {
        OrgTokens::new(&self.db)
    }

    /// The activity log.
    pub fn activity(&self) -> Activity<'_> {
        Activity::new(&self.db)
    }

    /// The A2A queue.
    pub fn queue(&self) -> Queue<'_> {
        Queue::new(&self.db)
    }

    /// The cron schedules and their history.
    pub fn schedules(&self) -> Schedules<'_> {
        Schedules::new(&self.db)
    }

    /// The workspace auth tokens repository.
    pub fn tokens(&self) -> WorkspaceTokens<'_> {
        WorkspaceTokens::new(&self.db)
    }

    /// A listener on the notification `channel`, on PostgreSQL; `None` on SQLite, which has
    /// no other process to hear from.
    pub async fn event_listener(&self, channel: &str) -> Result<Option<EventListener>, StoreError> {
        match &self.db {
            Db::Postgres(p) => Ok(Some(EventListener::connect(p, channel).await?)),
            Db::Sqlite(_) => Ok(None),
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
    }
}
