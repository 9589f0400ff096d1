//! The group-commit writer: what the hot paths write without waiting for the database.
//!
//! - **Activity rows** ([`crate::Activity::record_later`]) wait in a buffer of at most
//!   `buffer` rows (a caller waits for room: back-pressure, never unbounded growth) and are
//!   inserted in multi-row statements of up to `batch` rows, a batch closing when it is full
//!   or `linger` after its first row.
//! - **Coalesced updates**: heartbeats, last-activity and last-outbound times and token
//!   last-use times keep only the latest value per workspace (or token) until the next flush,
//!   so a fleet of agents costs one row update per agent per flush, whatever their rate.
//! - **Notifications** to other replicas (`NOTIFY`) are sent after the flush that precedes
//!   them, several in one statement.
//!
//! Everything of one flush is written in one transaction. What a `kill -9` can lose is
//! exactly what was accepted and not yet committed: at most `buffer` activity rows (the
//! buffer includes the batch being written), the coalesced updates of the last `linger`, and
//! the notifications of that flush. [`WriteBehind::barrier`] waits until everything queued
//! before it is committed: reads of the activity log, of workspace rows and of token lists
//! call it, so a request never misses a write that came before it; [`crate::Store::close`]
//! flushes everything.

mod flush;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::WorkspaceId;
use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::ActivityRow;
use crate::db::Pool;
use crate::workspaces::Heartbeat;

/// How long a barrier waits for the writer before the read goes ahead anyway.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

/// How often an idle writer reports that it is alive.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Notifications kept for the next flush at most; more are dropped (logged).
const MAX_NOTICES: usize = 10_000;

/// The group-commit writer's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBehindSettings {
    /// Activity rows accepted and not yet committed, at most (what a `kill -9` can lose).
    pub buffer: usize,
    /// Rows per multi-row insert, at most.
    pub batch: usize,
    /// How long a batch stays open after its first row.
    pub linger: Duration,
}

impl Default for WriteBehindSettings {
    fn default() -> Self {
        WriteBehindSettings {
            buffer: 4096,
            batch: 256,
            linger: Duration::from_millis(2),
        }
    }
}

/// Called with each activity row once it is committed.
pub type ActivityHook = Arc<dyn Fn(&ActivityRow) + Send + Sync>;

/// One thing in the writer's queue.
enum Item {
    Activity(Box<ActivityRow>, OwnedSemaphorePermit),
    /// Answered once everything queued before it is committed.
    Barrier(oneshot::Sender<()>),
}

/// The latest coalesced values, taken whole by each flush.
#[derive(Debug, Default)]
pub(crate) struct Coalesced {
    pub(crate) heartbeats: HashMap<WorkspaceId, (Heartbeat, OffsetDateTime)>,
    pub(crate) activity_times: HashMap<WorkspaceId, OffsetDateTime>,
    pub(crate) outbound_times: HashMap<WorkspaceId, OffsetDateTime>,
    pub(crate) token_uses: HashMap<Vec<u8>, OffsetDateTime>,
    pub(crate) notices: Vec<(String, String)>,
}

impl Coalesced {
    fn is_empty(&self) -> bool {
        self.heartbeats.is_empty()
            && self.activity_times.is_empty()
            && self.outbound_times.is_empty()
            && self.token_uses.is_empty()
            && self.notices.is_empty()
    }
}

/// The writer's shared state. One per [`crate::Store`].
pub(crate) struct WriteBehind {
    tx: mpsc::UnboundedSender<Item>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Item>>,
    room: Arc<Semaphore>,
    coalesced: Mutex<Coalesced>,
    /// The heartbeats of the flush being written: taken from `coalesced` and not yet
    /// committed. Locked after `coalesced` when both are held.
    writing: Mutex<HashMap<WorkspaceId, (Heartbeat, OffsetDateTime)>>,
    wake: Notify,
    hook: Mutex<Option<ActivityHook>>,
    settings: WriteBehindSettings,
    last_flush: Mutex<Option<OffsetDateTime>>,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl WriteBehind {
    pub(crate) fn new(settings: WriteBehindSettings) -> Self {
        let settings = WriteBehindSettings {
            buffer: settings.buffer.max(1),
            batch: settings.batch.max(1),
            linger: settings.linger,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        WriteBehind {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            room: Arc::new(Semaphore::new(settings.buffer)),
            coalesced: Mutex::new(Coalesced::default()),
            writing: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            hook: Mutex::new(None),
            settings,
            last_flush: Mutex::new(None),
        }
    }

    /// Sets the hook called with each committed activity row.
    pub(crate) fn set_hook(&self, hook: ActivityHook) {
        *self.hook.lock() = Some(hook);
    }

    /// Queues an activity row, waiting while the buffer is full.
    pub(crate) async fn push_activity(&self, row: ActivityRow) {
        let Ok(permit) = Arc::clone(&self.room).acquire_owned().await else {
            tracing::warn!("activity writer closed: row dropped");
            return;
        };
        if self.tx.send(Item::Activity(Box::new(row), permit)).is_err() {
            tracing::warn!("activity writer closed: row dropped");
        }
    }

    /// Changes the coalesced values and wakes the writer.
    fn coalesce(&self, change: impl FnOnce(&mut Coalesced)) {
        change(&mut self.coalesced.lock());
        self.wake.notify_one();
    }

    /// Records a heartbeat to write (the latest per workspace wins).
    pub(crate) fn heartbeat(&self, id: WorkspaceId, hb: Heartbeat) {
        let now = OffsetDateTime::now_utc();
        self.coalesce(|c| {
            c.heartbeats.insert(id, (hb, now));
        });
    }

    /// The latest heartbeat of `id` accepted and not yet committed, if any: waiting for the
    /// next flush, else being written by this one.
    pub(crate) fn pending_heartbeat(&self, id: WorkspaceId) -> Option<(Heartbeat, OffsetDateTime)> {
        let coalesced = self.coalesced.lock();
        if let Some(waiting) = coalesced.heartbeats.get(&id) {
            return Some(waiting.clone());
        }
        self.writing.lock().get(&id).cloned()
    }

    /// Takes the coalesced values for a flush; their heartbeats stay visible to
    /// [`WriteBehind::pending_heartbeat`] until [`WriteBehind::written`].
    fn take_coalesced(&self) -> Coalesced {
        let mut coalesced = self.coalesced.lock();
        let taken = std::mem::take(&mut *coalesced);
        self.writing.lock().clone_from(&taken.heartbeats);
        taken
    }

    /// The flush's transaction is over (committed or failed).
    fn written(&self) {
        self.writing.lock().clear();
    }

    /// Records that `id` did work now (`last_activity_at`).
    pub(crate) fn touch_activity(&self, id: WorkspaceId) {
        let now = OffsetDateTime::now_utc();
        self.coalesce(|c| {
            c.activity_times.insert(id, now);
        });
    }

    /// Records that `id` sent a message now (`last_outbound_at`).
    pub(crate) fn touch_outbound(&self, id: WorkspaceId) {
        let now = OffsetDateTime::now_utc();
        self.coalesce(|c| {
            c.outbound_times.insert(id, now);
        });
    }

    /// Records that the token with this hash was accepted now (`last_used_at`).
    pub(crate) fn token_used(&self, hash: Vec<u8>) {
        let now = OffsetDateTime::now_utc();
        self.coalesce(|c| {
            c.token_uses.insert(hash, now);
        });
    }

    /// Queues a `NOTIFY` for the next flush (dropped, and logged, past [`MAX_NOTICES`]).
    pub(crate) fn notify(&self, channel: &str, payload: String) {
        self.coalesce(|c| {
            if c.notices.len() < MAX_NOTICES {
                c.notices.push((channel.to_owned(), payload));
            } else {
                tracing::warn!(channel, "too many notifications waiting: one dropped");
            }
        });
    }

    /// Waits until everything queued before this call is committed (at most
    /// [`BARRIER_WAIT`], then goes ahead with a warning).
    pub(crate) async fn barrier(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Barrier(done)).is_err() {
            return;
        }
        self.wake.notify_one();
        if tokio::time::timeout(BARRIER_WAIT, wait).await.is_err() {
            tracing::warn!("the write-behind writer did not answer: reading without it");
        }
    }

    /// When the writer last completed a pass (a flush, or an idle tick).
    pub(crate) fn last_flush(&self) -> Option<OffsetDateTime> {
        *self.last_flush.lock()
    }

    /// The writer loop: collects a batch, flushes it, forever. Restarted by the store after
    /// a panic; the queue survives it.
    pub(crate) async fn run(self: Arc<Self>, db: Pool) {
        let mut rx = self.rx.lock().await;
        loop {
            let Some(batch) = self.collect(&mut rx).await else {
                return;
            };
            self.flush(&db, batch).await;
        }
    }

    /// Writes everything queued now, once the loop is stopped (at close).
    pub(crate) async fn drain(&self, db: &Pool) {
        let Ok(mut rx) = tokio::time::timeout(BARRIER_WAIT, self.rx.lock()).await else {
            tracing::warn!("the write-behind writer still runs at close");
            return;
        };
        let mut batch = Batch::default();
        while let Ok(item) = rx.try_recv() {
            batch.add(item);
            if batch.rows.len() >= self.settings.batch {
                self.flush(db, std::mem::take(&mut batch)).await;
            }
        }
        self.flush(db, batch).await;
    }

    /// The next batch: waits for a first item (or coalesced values), then keeps it open for
    /// `linger` or until it is full or a barrier arrives. `None`: every sender is gone.
    async fn collect(&self, rx: &mut mpsc::UnboundedReceiver<Item>) -> Option<Batch> {
        let mut batch = Batch::default();
        tokio::select! {
            item = rx.recv() => batch.add(item?),
            () = self.wake.notified() => {}
            // An idle writer still ticks (its liveness shows it alive).
            () = tokio::time::sleep(IDLE_TICK) => return Some(batch),
        }
        let until = tokio::time::Instant::now() + self.settings.linger;
        // A full buffer closes the batch at once: its writers are waiting for room.
        while batch.rows.len() < self.settings.batch
            && batch.barriers.is_empty()
            && self.room.available_permits() > 0
        {
            tokio::select! {
                item = rx.recv() => batch.add(item?),
                () = tokio::time::sleep_until(until) => break,
            }
        }
        while batch.rows.len() < self.settings.batch {
            match rx.try_recv() {
                Ok(item) => batch.add(item),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Commits one batch with the coalesced values, then runs the hook, frees the room and
    /// answers the barriers.
    async fn flush(&self, db: &Pool, batch: Batch) {
        let coalesced = self.take_coalesced();
        if batch.rows.is_empty() && coalesced.is_empty() {
            *self.last_flush.lock() = Some(OffsetDateTime::now_utc());
            batch.answer();
            return;
        }
        let rows: Vec<&ActivityRow> = batch.rows.iter().map(|(row, _)| &**row).collect();
        let stored = flush::write(db, &rows, &coalesced).await;
        self.written();
        let hook = self.hook.lock().clone();
        if let Some(hook) = hook {
            for row in rows.iter().filter(|r| stored.contains(&r.id)) {
                hook(row);
            }
        }
        drop(rows);
        flush::send_notices(db, &coalesced.notices).await;
        *self.last_flush.lock() = Some(OffsetDateTime::now_utc());
        batch.answer();
    }
}

/// What one flush writes from the queue.
#[derive(Default)]
struct Batch {
    rows: Vec<(Box<ActivityRow>, OwnedSemaphorePermit)>,
    barriers: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, item: Item) {
        match item {
            Item::Activity(row, permit) => self.rows.push((row, permit)),
            Item::Barrier(done) => self.barriers.push(done),
        }
    }

    /// Frees the rows' room and answers the barriers.
    fn answer(self) {
        drop(self.rows);
        for done in self.barriers {
            let _ = done.send(());
        }
    }
}
