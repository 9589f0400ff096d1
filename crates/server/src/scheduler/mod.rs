//! The scheduler (spec: scheduler-channels-mcp §5): fires due cron schedules as A2A messages,
//! safe with several server replicas on one database.
//!
//! Each tick claims due runs in the store (`Schedules::claim_due`: one replica per run, the
//! next run computed and written in the same transaction, a lease on the row) and starts one
//! task per claim, at most [`Settings::concurrency`] at once across ticks; the tick does not
//! wait for them, so a slow agent delays nobody else and the loop's liveness stays fresh. A
//! fire task checks capacity, sends the prompt through the A2A proxy as the system caller
//! [`CALLER`], and records the outcome and its history row together. A replica that dies
//! mid-fire leaves its lease to expire; another replica then fires the run if its message was
//! never sent, or records it as interrupted if it was (never twice).
//!
//! Time comes from a [`Clock`], so tests choose "now".

pub mod cron;
mod fire;
pub mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use molecule_store::{Claim, Store};
use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::events::EventBus;

pub use fire::FireOutcome;

/// The system caller the scheduler sends as.
pub const CALLER: &str = "system:scheduler";

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The scheduler's constants (the reference's values by default).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the loop looks for due runs.
    pub poll_every: Duration,
    /// The most runs claimed per tick.
    pub batch: i64,
    /// The most fires in flight at once in this process.
    pub concurrency: usize,
    /// The bound on one delivery.
    pub fire_timeout: Duration,
    /// Capacity polls before a busy workspace's run is skipped.
    pub capacity_polls: u32,
    /// The pause between capacity polls.
    pub capacity_poll_every: Duration,
    /// How long a claim holds a run (longer than any fire may last).
    pub lease: Duration,
    /// How often the phantom-busy sweep runs.
    pub phantom_every: Duration,
    /// Workspaces busy with no activity for this long are reset.
    pub phantom_window: Duration,
    /// The retry delay of a schedule whose expression no longer parses.
    pub invalid_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poll_every: Duration::from_secs(30),
            batch: 50,
            concurrency: 10,
            fire_timeout: Duration::from_secs(5 * 60),
            capacity_polls: 12,
            capacity_poll_every: Duration::from_secs(10),
            lease: Duration::from_secs(10 * 60),
            phantom_every: Duration::from_secs(5 * 60),
            phantom_window: Duration::from_secs(10 * 60),
            invalid_backoff: Duration::from_secs(60 * 60),
        }
    }
}

/// The scheduler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    a2a: molecule_a2a::Proxy,
    events: EventBus,
    settings: Settings,
    clock: Arc<dyn Clock>,
    slots: Arc<Semaphore>,
    repaired: AtomicBool,
    last_phantom_sweep: Mutex<Option<OffsetDateTime>>,
}

impl Scheduler {
    /// A scheduler over these parts.
    pub fn new(
        store: Store,
        a2a: molecule_a2a::Proxy,
        events: EventBus,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Scheduler {
            inner: Arc::new(Inner {
                store,
                a2a,
                events,
                settings,
                clock,
                slots,
                repaired: AtomicBool::new(false),
                last_phantom_sweep: Mutex::new(None),
            }),
        }
    }

    /// The same scheduler sending through another proxy.
    pub fn with_proxy(&self, a2a: molecule_a2a::Proxy) -> Self {
        Self::new(
            self.inner.store.clone(),
            a2a,
            self.inner.events.clone(),
            self.inner.settings.clone(),
            Arc::clone(&self.inner.clock),
        )
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The current time of the scheduler's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Runs the loop under the supervisor as `scheduler` (restarted after a panic; its last
    /// tick on `/admin/liveness`).
    pub fn spawn(&self, supervisor: &crate::supervisor::Supervisor) {
        let scheduler = self.clone();
        supervisor.spawn_loop("scheduler", self.inner.settings.poll_every, move || {
            let scheduler = scheduler.clone();
            async move {
                scheduler.tick().await;
            }
        });
    }

    /// One tick: the start-up repair (first tick only), claims of due runs with a fire task
    /// for each, then the phantom-busy sweep when due. Answers the fire tasks started (the
    /// loop does not wait for them).
    pub async fn tick(&self) -> Vec<JoinHandle<Option<FireOutcome>>> {
        if !self.inner.repaired.swap(true, Ordering::SeqCst) {
            self.repair().await;
        }
        let fires = self.claim_and_fire().await;
        self.phantom_sweep_if_due().await;
        fires
    }

    /// A tick whose fires are awaited: what each one recorded.
    pub async fn tick_and_wait(&self) -> Vec<FireOutcome> {
        let mut outcomes = Vec::new();
        for fire in self.tick().await {
            if let Ok(Some(outcome)) = fire.await {
                outcomes.push(outcome);
            }
        }
        outcomes
    }

    /// Start-up repair: every enabled schedule without a next run gets one (whatever its
    /// workspace's status); rows whose expression or zone is bad stay as they are, logged.
    pub async fn repair(&self) -> usize {
        let schedules = self.inner.store.schedules();
        let rows = match schedules.enabled_without_next_run().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "scheduler: repair query failed");
                return 0;
            }
        };
        let now = self.now();
        let mut repaired = 0;
        for row in rows {
            match cron::next_run(&row.cron_expr, &row.timezone, now) {
                Ok(next) => match schedules.fill_next_run(row.id, next).await {
                    Ok(true) => repaired += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(schedule = %row.id, error = %e, "scheduler: repair failed")
                    }
                },
                Err(e) => {
                    tracing::warn!(schedule = %row.id, error = %e, "scheduler: cannot repair next_run_at")
                }
            }
        }
        repaired
    }

    async fn claim_and_fire(&self) -> Vec<JoinHandle<Option<FireOutcome>>> {
        let free = self.inner.slots.available_permits();
        if free == 0 {
            return Vec::new();
        }
        let limit = self
            .inner
            .settings
            .batch
            .min(i64::try_from(free).unwrap_or(i64::MAX));
        let now = self.now();
        let backoff = time::Duration::try_from(self.inner.settings.invalid_backoff)
            .unwrap_or(time::Duration::HOUR);
        let lease = time::Duration::try_from(self.inner.settings.lease)
            .unwrap_or(time::Duration::minutes(10));
        let claims = self
            .inner
            .store
            .schedules()
            .claim_due(now, limit, lease, |s| {
                cron::CronSpec::parse(&s.cron_expr, &s.timezone)
                    .ok()
                    .and_then(|spec| spec.next_after(now))
                    .unwrap_or(now + backoff)
            })
            .await;
        match claims {
            Ok(claims) => claims.into_iter().map(|c| self.start_fire(c)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "scheduler: claiming due runs failed");
                Vec::new()
            }
        }
    }

    /// Starts the fire task of one claim. A panic inside it is caught here: the run is
    /// recorded as an error (its next run was already advanced by the claim).
    fn start_fire(&self, claim: Claim) -> JoinHandle<Option<FireOutcome>> {
        let scheduler = self.clone();
        let slots = Arc::clone(&self.inner.slots);
        tokio::spawn(async move {
            let _permit = slots.acquire_owned().await.ok()?;
            let (id, token) = (claim.schedule.id, claim.token);
            let inner = scheduler.clone();
            match tokio::spawn(async move { inner.fire(claim).await }).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(schedule = %id, error = %e, "scheduler: a fire panicked");
                    scheduler.record_panic(id, token).await;
                    None
                }
            }
        })
    }

    async fn phantom_sweep_if_due(&self) {
        let now = self.now();
        let every = time::Duration::try_from(self.inner.settings.phantom_every)
            .unwrap_or(time::Duration::minutes(5));
        {
            // The first sweep comes one period after the first tick: a workspace that just
            // reported a task is not reset before it had time to log any activity.
            let mut last = self.inner.last_phantom_sweep.lock();
            match *last {
                None => {
                    *last = Some(now);
                    return;
                }
                Some(at) if now - at < every => return,
                Some(_) => *last = Some(now),
            }
        }
        let window = time::Duration::try_from(self.inner.settings.phantom_window)
            .unwrap_or(time::Duration::minutes(10));
        match self
            .inner
            .store
            .schedules()
            .reset_phantom_busy(now - window)
            .await
        {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(workspace = %id, "scheduler: reset phantom-busy workspace");
                }
            }
            Err(e) => tracing::error!(error = %e, "scheduler: phantom-busy sweep failed"),
        }
    }
}
