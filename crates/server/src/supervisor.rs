//! Supervised background loops (spec: auth-router §6.1 step 11, lifecycle §8).
//!
//! A loop runs inside an inner task; when that task panics, the supervisor logs the panic and
//! starts it again after a backoff (1 s, doubling to 30 s; back to 1 s once a tick completes).
//! A clean return is final. Every loop stops when [`Supervisor::shutdown`] is called.
//!
//! ```ignore
//! state.supervisor.spawn_loop("provision-timeout-sweep", Duration::from_secs(30), move || {
//!     let state = state.clone();
//!     async move { sweep(&state).await }
//! });
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The restart delays after a panic: `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first panic.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to 30 s, as the reference.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// Runs and restarts the background loops; records their ticks for `/admin/liveness`.
/// Cheap to clone: every clone shares the same loops.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    backoff: Backoff,
    /// Per loop: the time of the last completed tick and how many ticks completed.
    ticks: Mutex<BTreeMap<&'static str, (OffsetDateTime, u64)>>,
    stop: watch::Sender<bool>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("backoff", &self.inner.backoff)
            .field("stopped", &*self.inner.stop.borrow())
            .finish_non_exhaustive()
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    /// A supervisor with the reference's backoff (1 s doubling to 30 s).
    pub fn new() -> Self {
        Self::with_backoff(Backoff::default())
    }

    /// A supervisor with this restart backoff.
    pub fn with_backoff(backoff: Backoff) -> Self {
        let (stop, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                backoff,
                ticks: Mutex::new(BTreeMap::new()),
                stop,
                handles: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `tick` at once and then every `every` (a slow tick delays the next one rather than
    /// bunching them), recording the time of each completed tick under `name`. A panicking tick
    /// restarts the loop after the backoff.
    pub fn spawn_loop<F, Fut>(&self, name: &'static str, every: Duration, tick: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tick = Arc::new(tick);
        let supervisor = self.clone();
        self.spawn_task(name, move || {
            let tick = Arc::clone(&tick);
            let supervisor = supervisor.clone();
            async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    tick().await;
                    supervisor.record_tick(name);
                }
            }
        });
    }

    /// Runs a long-lived task (an event-driven loop) under supervision: `task` is called again
    /// after a panic (with backoff); a clean return is final. Such a task may report its
    /// progress with [`Supervisor::record_tick`].
    pub fn spawn_task<F, Fut>(&self, name: &'static str, task: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let supervisor = self.clone();
        let mut stop = self.inner.stop.subscribe();
        let handle = tokio::spawn(async move {
            let backoff = supervisor.inner.backoff;
            let mut delay = backoff.initial;
            loop {
                if *stop.borrow_and_update() {
                    return;
                }
                let started = supervisor.tick_count(name);
                let mut run = tokio::spawn(task());
                let outcome = tokio::select! {
                    outcome = &mut run => outcome,
                    _ = stop.changed() => {
                        run.abort();
                        let _ = run.await;
                        return;
                    }
                };
                match outcome {
                    Ok(()) => {
                        tracing::info!(task = name, "background task finished");
                        return;
                    }
                    Err(e) if e.is_panic() => {
                        if supervisor.tick_count(name) != started {
                            delay = backoff.initial;
                        }
                        let message = panic_message(e.into_panic());
                        tracing::error!(
                            task = name,
                            panic = %message,
                            "background task panicked; restarting in {delay:?}"
                        );
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = stop.changed() => return,
                        }
                        delay = (delay * 2).min(backoff.max);
                    }
                    Err(_) => return,
                }
            }
        });
        self.inner.handles.lock().push(handle);
    }

    /// Records that the loop `name` completed a tick now.
    pub fn record_tick(&self, name: &'static str) {
        let now = OffsetDateTime::now_utc();
        let mut ticks = self.inner.ticks.lock();
        let entry = ticks.entry(name).or_insert((now, 0));
        *entry = (now, entry.1 + 1);
    }

    /// The time of the last completed tick of each loop that has completed one.
    pub fn last_ticks(&self) -> BTreeMap<&'static str, OffsetDateTime> {
        self.inner
            .ticks
            .lock()
            .iter()
            .map(|(name, (at, _))| (*name, *at))
            .collect()
    }

    /// Asks every loop to stop (idempotent). Loops started afterwards stop at once.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Whether [`Supervisor::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Stops every loop and waits for them, at most `deadline`.
    pub async fn stop(&self, deadline: Duration) {
        self.shutdown();
        let handles: Vec<_> = std::mem::take(&mut *self.inner.handles.lock());
        let all = async {
            for handle in handles {
                let _ = handle.await;
            }
        };
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("background loops still running after {deadline:?}");
        }
    }

    /// How many ticks the loop `name` has completed.
    pub fn tick_count(&self, name: &'static str) -> u64 {
        self.inner.ticks.lock().get(name).map_or(0, |(_, n)| *n)
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const EVERY: Duration = Duration::from_secs(10);

    /// Sleeps in paused (virtual) time: the clock jumps, nothing waits for real.
    async fn at(start: tokio::time::Instant, offset_ms: u64) {
        tokio::time::sleep_until(start + Duration::from_millis(offset_ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_tick_is_restarted_after_the_backoff_and_ticks_resume() {
        let supervisor = Supervisor::new();
        let calls = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        {
            let calls = Arc::clone(&calls);
            supervisor.spawn_loop("flaky", EVERY, move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    // The second and third ticks panic.
                    if n == 2 || n == 3 {
                        panic!("tick {n} failed");
                    }
                }
            });
        }
        at(start, 500).await;
        assert_eq!(supervisor.tick_count("flaky"), 1, "first tick at once");
        // t=10 s: tick 2 panics; restart after 1 s, where tick 3 panics at once; the next
        // restart waits 2 s.
        at(start, 10_500).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        at(start, 11_500).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(supervisor.tick_count("flaky"), 1);
        at(start, 12_900).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "the backoff doubled to 2 s"
        );
        at(start, 13_500).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(supervisor.tick_count("flaky"), 2, "ticks resume");
        // And go on at the loop's period.
        at(start, 33_600).await;
        assert_eq!(supervisor.tick_count("flaky"), 4);
        assert!(supervisor.last_ticks().contains_key("flaky"));
        supervisor.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_doubles_to_its_cap() {
        let supervisor = Supervisor::with_backoff(Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        });
        let calls = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        {
            let calls = Arc::clone(&calls);
            supervisor.spawn_task("always-panics", move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { panic!("no") }
            });
        }
        // Runs at 0, 1, 3, 7, 11, 15 s (delays 1, 2, 4, 4, 4).
        at(start, 15_500).await;
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        supervisor.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_clean_return_is_final_and_shutdown_stops_loops() {
        let supervisor = Supervisor::new();
        let once = Arc::new(AtomicU32::new(0));
        {
            let once = Arc::clone(&once);
            supervisor.spawn_task("one-shot", move || {
                once.fetch_add(1, Ordering::SeqCst);
                async {}
            });
        }
        supervisor.spawn_loop("ticker", EVERY, || async {});
        let start = tokio::time::Instant::now();
        at(start, 25_000).await;
        assert_eq!(once.load(Ordering::SeqCst), 1);
        assert_eq!(supervisor.tick_count("ticker"), 3);
        supervisor.stop(Duration::from_secs(1)).await;
        assert!(supervisor.is_shut_down());
        at(start, 100_000).await;
        assert_eq!(supervisor.tick_count("ticker"), 3);
        // A loop started after shutdown never runs.
        supervisor.spawn_loop("late", EVERY, || async {});
        at(start, 110_000).await;
        assert_eq!(supervisor.tick_count("late"), 0);
    }
}
