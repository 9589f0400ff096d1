//! Closed-loop load: concurrent clients each sending one request after the other, for a
//! measured window or for a fixed number of requests, and what they saw (rate, latency
//! percentiles, errors).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::knobs::Timing;

/// One request of client `client` (its `n`th, from 0): true when its answer was correct.
pub type Request =
    Arc<dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What a load did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Latencies of the correct answers, sorted.
    pub latencies: Vec<Duration>,
    /// Wrong answers and transport failures.
    pub errors: usize,
    /// The counted window (the whole run for a fixed count).
    pub window: Duration,
}

impl Outcome {
    /// Correct answers per second of the window.
    pub fn per_second(&self) -> f64 {
        per_second(self.latencies.len(), self.window)
    }

    /// The nearest-rank percentile `p` (0–100); zero without samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn merge(parts: Vec<(Vec<Duration>, usize)>, window: Duration) -> Self {
        let mut outcome = Outcome {
            window,
            ..Outcome::default()
        };
        for (latencies, errors) in parts {
            outcome.latencies.extend(latencies);
            outcome.errors += errors;
        }
        outcome.latencies.sort_unstable();
        outcome
    }
}

/// `count` events per second of `window` (zero for an empty window).
pub fn per_second(count: usize, window: Duration) -> f64 {
    if window.is_zero() {
        return 0.0;
    }
    count as f64 / window.as_secs_f64()
}

/// `timing.clients` loops of `request` for the warm-up and then the measured window; only
/// requests begun and finished inside the window count.
pub async fn for_window(timing: Timing, request: Request) -> Outcome {
    let measure_from = Instant::now() + timing.warmup;
    let end = measure_from + timing.measured;
    let mut tasks = Vec::new();
    for client in 0..timing.clients {
        let request = Arc::clone(&request);
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            for n in 0u64.. {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let ok = request(client, n).await;
                let done = Instant::now();
                if began >= measure_from && done <= end {
                    if ok {
                        latencies.push(done - began);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    Outcome::merge(join(tasks).await, timing.measured)
}

/// `clients` loops of `request` until `total` requests have been sent; the window is the
/// whole run. Request `n` of a client is its `n`th; the global sequence number is not needed
/// by the callers (each request is unique by client and `n`).
pub async fn for_count(clients: usize, total: usize, request: Request) -> Outcome {
    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients.max(1) {
        let (request, sent) = (Arc::clone(&request), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            for n in 0u64.. {
                if sent.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
                let began = Instant::now();
                if request(client, n).await {
                    latencies.push(began.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let parts = join(tasks).await;
    Outcome::merge(parts, started.elapsed())
}

/// Every task's result; a task that panicked counts as one error.
async fn join(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
) -> Vec<(Vec<Duration>, usize)> {
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await.unwrap_or_else(|_| (Vec::new(), 1)));
    }
    parts
}
