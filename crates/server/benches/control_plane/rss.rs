//! The server's resident memory: the real `molecule-server` binary (release build) as a child
//! process without a provisioning backend, on a fresh SQLite data directory or a fresh
//! PostgreSQL database. `VmRSS` of `/proc/<pid>/status` is read once `/health` answers and the
//! process has settled, then again after `BENCH_RSS_WORKSPACES` external workspaces were
//! created and registered through the API, with `VmHWM`, the peak.
//!
//! The binary runs in dev mode so that its agents can be registered at loopback addresses
//! (`http://127.0.0.1:9/agents/<i>`, one per agent, never called): strict mode refuses
//! loopback agents, and no address off this machine is ever named. Every workspace still
//! gets its token and every registration presents it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use molecule_store::testing::TestStore;

use crate::Ctx;
use crate::api::{Api, agent_url};
use crate::knobs::Database;
use crate::procs::{Killed, free_port, wait_for_health};
use crate::report::{Row, verdict};

/// How long the process is left alone before a reading.
const SETTLE: Duration = Duration::from_secs(2);

/// The goals: idle, and with 10 000 workspaces (bytes).
const GOAL_IDLE: u64 = 30_000_000;
const GOAL_LOADED: u64 = 200_000_000;

/// Runs the RSS rows on `database`.
pub fn run(ctx: &Ctx, database: Database) -> anyhow::Result<Vec<Row>> {
    let knobs = &ctx.knobs;
    let dir = tempfile::tempdir_in(ctx.dir())?;
    let db = match database {
        Database::Sqlite => None,
        Database::Postgres => Some(ctx.load.block_on(TestStore::postgres())),
    };
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("server.log");
    let mut server = start(
        ctx.server_bin()?,
        dir.path(),
        port,
        db.as_ref().map(|d| d.url()),
        &log,
    )?;
    let api = Api::new(&base, knobs.setup_clients * 2)?;
    let pid = server.pid();
    let result = ctx.load.block_on(async {
        if let Err(e) = wait_for_health(&api.http, &format!("{base}/health")).await {
            let _ = server.check_running("molecule-server");
            bail!("{e:#}\n{}", tail(&log));
        }
        tokio::time::sleep(SETTLE).await;
        let idle = status_bytes(pid, "VmRSS")?;
        eprintln!(
            "{}: rss: creating and registering {} workspaces on the binary...",
            database.label(),
            knobs.rss_workspaces
        );
        api.populate("rss", knobs.rss_workspaces, knobs.setup_clients, agent_url)
            .await
            .with_context(|| tail(&log))?;
        tokio::time::sleep(SETTLE).await;
        let loaded = status_bytes(pid, "VmRSS")?;
        let peak = status_bytes(pid, "VmHWM")?;
        anyhow::Ok((idle, loaded, peak))
    });
    drop(server);
    ctx.load.block_on(async move { drop(db) });
    let (idle, loaded, peak) = result?;
    let db = database.label();
    Ok(vec![
        Row::value("server RSS, idle", db, mb(idle))
            .goal(format!("goal ≤ 30 MB: {}", verdict(idle <= GOAL_IDLE))),
        Row::value(
            format!("server RSS, {} workspaces registered", knobs.rss_workspaces),
            db,
            format!("{} (peak {})", mb(loaded), mb(peak)),
        )
        .goal(format!("goal ≤ 200 MB: {}", verdict(loaded <= GOAL_LOADED))),
    ])
}

/// The binary in dev mode on `port`, its data under `dir`, on `database_url` (else
/// SQLite in its data directory); its log in `log`.
fn start(
    bin: &Path,
    dir: &Path,
    port: u16,
    database_url: Option<&str>,
    log: &Path,
) -> anyhow::Result<Killed> {
    let mut command = Command::new(bin);
    command
        .env_clear()
        .current_dir(dir)
        .env("MOLECULE_DATA_DIR", dir.join("data"))
        .env("MOLECULE_HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("MOLECULE_ENV", "dev")
        .env("MOLECULE_BACKEND", "none")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    Ok(Killed(child))
}

/// A `kB` field of `/proc/<pid>/status` in bytes.
fn status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Bytes as decimal megabytes.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The last lines of the server's log, for an error.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(20);
    format!(
        "server log ({}):\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}
