//! The control-plane benchmark of issue 13 (`cargo xtask bench`, or
//! `cargo bench -p molecule-server --bench control_plane`): one run, on this machine, on
//! SQLite and on PostgreSQL, printing one table with the machine and the date:
//!
//! - [`a2a`]: A2A round trips per second and p50/p95/p99, direct, through nginx and through
//!   the proxy (a canvas caller and an agent caller in strict mode);
//! - [`heartbeats`]: heartbeats ingested per second from many registered agents;
//! - [`queue`]: messages enqueued for a full agent, then drained to it, per second;
//! - [`rss`]: the server binary's resident memory, idle and with 10 000 registered workspaces.
//!
//! The first three serve the real router in this process ([`in_process`]), strict mode, on a
//! fresh database each; the last runs the release binary. PostgreSQL is `TEST_DATABASE_URL`
//! (a fresh database per part) or a throwaway cluster from the machine's PostgreSQL binaries.
//! The knobs are environment variables ([`knobs`]). Nothing is asserted about speed; the
//! table says which of the goals were met.
//!
//! Needs `nginx` (Debian: `apt-get install nginx-light`). The echo agent and the server
//! binary are built in release mode unless `MOLECULE_ECHO_AGENT` / `MOLECULE_SERVER_BIN` name
//! them.

mod a2a;
mod api;
mod heartbeats;
mod in_process;
mod knobs;
mod load;
mod nginx;
mod procs;
mod queue;
mod report;
mod rss;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use molecule_store::testing::TestStore;

use crate::knobs::{Database, Knobs, Section};
use crate::nginx::Nginx;
use crate::procs::release_binary;
use crate::report::{Report, Row};

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; test runners list (`--list`) or run bench targets in
    // test mode without it: there is no test here, so answer an empty list and do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("control_plane bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every part of the run shares.
pub struct Ctx {
    /// The knobs.
    pub knobs: Knobs,
    /// The runtime the load (the bench's clients) runs on.
    pub load: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    echo_agent: Option<PathBuf>,
    nginx: Option<PathBuf>,
    server_bin: Option<PathBuf>,
}

impl Ctx {
    /// A scratch directory for agents, nginx and server data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The echo agent binary.
    pub fn echo_agent(&self) -> anyhow::Result<&Path> {
        self.echo_agent.as_deref().context("no echo agent binary")
    }

    /// The nginx binary.
    pub fn nginx(&self) -> anyhow::Result<&Path> {
        self.nginx.as_deref().context("no nginx binary")
    }

    /// The server binary.
    pub fn server_bin(&self) -> anyhow::Result<&Path> {
        self.server_bin
            .as_deref()
            .context("no molecule-server binary")
    }
}

/// Runs every chosen part on every chosen database and prints the table; false when a part
/// failed (the others still ran).
fn run() -> anyhow::Result<bool> {
    let knobs = Knobs::from_env()?;
    let needs_agent = knobs.runs(Section::A2a) || knobs.runs(Section::Queue);
    let ctx = Ctx {
        echo_agent: needs_agent
            .then(|| {
                release_binary(
                    "MOLECULE_ECHO_AGENT",
                    "molecule-echo-agent",
                    "molecule-echo-agent",
                )
            })
            .transpose()?,
        nginx: knobs.runs(Section::A2a).then(Nginx::binary).transpose()?,
        server_bin: knobs
            .runs(Section::Rss)
            .then(|| release_binary("MOLECULE_SERVER_BIN", "molecule-server", "molecule-server"))
            .transpose()?,
        load: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("load")
            .build()?,
        dir: tempfile::tempdir().context("cannot create a temp dir")?,
        knobs,
    };
    // Without TEST_DATABASE_URL, test databases live on one throwaway cluster while a test
    // store of it lives: this one keeps it up for the whole run.
    let keeper = ctx
        .knobs
        .databases
        .contains(&Database::Postgres)
        .then(|| ctx.load.block_on(TestStore::postgres()));

    let mut report = Report::new();
    let mut ok = true;
    let mut baseline = a2a::Baseline::default();
    for section in ctx.knobs.sections.clone() {
        for database in ctx.knobs.databases.clone() {
            let rows = match section {
                Section::A2a => a2a::run(&ctx, database, &mut baseline),
                Section::Heartbeats => heartbeats::run(&ctx, database),
                Section::Queue => queue::run(&ctx, database),
                Section::Rss => rss::run(&ctx, database),
            };
            match rows {
                Ok(rows) => rows.into_iter().for_each(|r| report.push(r)),
                Err(e) => {
                    ok = false;
                    eprintln!("{section:?} on {} failed: {e:#}", database.label());
                    report.push(Row::value(
                        format!("{section:?}"),
                        database.label(),
                        "FAILED".into(),
                    ));
                    report.note(format!("{section:?} on {}: {e:#}", database.label()));
                }
            }
        }
    }
    ctx.load.block_on(async move { drop(keeper) });
    report.print(&ctx.knobs.describe());
    Ok(ok)
}
