//! Every background loop of the server, started from one place. Each runs under the
//! [`Supervisor`](crate::supervisor::Supervisor): restarted after a panic, its last tick on
//! `GET /admin/liveness`.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Config;
use crate::lifecycle::{Lifecycle, sweeps};
use crate::middleware::rate_limit;
use crate::state::AppState;

/// Starts the loops: `rate-limit-janitor`, `mcp-rate-limit-janitor`, `liveness-monitor`, `health-sweep`,
/// `a2a-queue-sweep`, `orphan-sweeper`, `hibernation-monitor`, `provision-timeout-sweep` and
/// `scheduler` (`crate::scheduler`) and `channel-manager` (`crate::channels`).
pub fn spawn_all(state: &AppState, config: &Config) {
    rate_limit::spawn_janitor("rate-limit-janitor", &state.rate_limiter, &state.supervisor);
    rate_limit::spawn_janitor(
        "mcp-rate-limit-janitor",
        &state.mcp_limiter,
        &state.supervisor,
    );
    let ttl = seconds(config.liveness_ttl_seconds);
    let timeout = seconds(config.provision_timeout_seconds);
    sweep(
        state,
        "liveness-monitor",
        sweeps::LIVENESS_EVERY,
        move |l| async move { l.sweep_liveness(ttl).await },
    );
    sweep(
        state,
        "health-sweep",
        sweeps::HEALTH_EVERY,
        |l| async move { l.sweep_health().await },
    );
    sweep(
        state,
        "orphan-sweeper",
        sweeps::ORPHANS_EVERY,
        |l| async move { l.sweep_orphans().await },
    );
    sweep(
        state,
        "hibernation-monitor",
        sweeps::HIBERNATION_EVERY,
        |l| async move { l.sweep_hibernation(OffsetDateTime::now_utc()).await },
    );
    sweep(
        state,
        "provision-timeout-sweep",
        sweeps::PROVISION_TIMEOUT_EVERY,
        move |l| async move { l.sweep_provision_timeouts(timeout).await },
    );
    spawn_queue_sweep(state);
    state.scheduler.spawn(&state.supervisor);
    state.channels.spawn(&state.supervisor);
}

/// A whole number of seconds from the configuration (saturating).
fn seconds(n: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A lifecycle sweep every `every`; a failed pass is logged and the next one runs on time.
fn sweep<F, Fut, T, E>(state: &AppState, name: &'static str, every: Duration, pass: F)
where
    F: Fn(Lifecycle) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: std::fmt::Display,
{
    let lifecycle = state.lifecycle.clone();
    state.supervisor.spawn_loop(name, every, move || {
        let (lifecycle, pass) = (lifecycle.clone(), pass.clone());
        async move {
            if let Err(e) = pass(lifecycle).await {
                tracing::error!(error = %e, "{name} failed");
            }
        }
    });
}

/// The A2A queue sweep: expire, reclaim rows a crash left `dispatched`, drain.
fn spawn_queue_sweep(state: &AppState) {
    let proxy = state.a2a.clone();
    // A row left `dispatched` longer than any delivery may last was orphaned by a crash. On
    // SQLite only this process delivers, so at start-up every such row is an orphan.
    let ceiling = proxy.settings().agent_ceiling + Duration::from_secs(60);
    let sole_process = state.store.backend() == molecule_store::Backend::Sqlite;
    let booted = OffsetDateTime::now_utc();
    state
        .supervisor
        .spawn_loop("a2a-queue-sweep", sweeps::QUEUE_EVERY, move || {
            let proxy = proxy.clone();
            async move {
                let mut cutoff = OffsetDateTime::now_utc() - ceiling;
                if sole_process && cutoff < booted {
                    cutoff = booted;
                }
                let report = proxy.sweep(cutoff).await;
                if report != molecule_a2a::queue::SweepReport::default() {
                    tracing::info!(?report, "a2a queue sweep");
                }
            }
        });
}
