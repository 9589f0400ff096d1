//! `cargo xtask bench`: issue 13's measurements in one run on this machine (not part of
//! `cargo xtask ci`). Builds the release binaries the bench runs (the server, the echo agent),
//! provides PostgreSQL (`TEST_DATABASE_URL`, else one throwaway cluster for the run), then runs
//! `cargo bench -p molecule-server --bench control_plane`, which prints one table: A2A round
//! trips (direct, nginx, the proxy), heartbeats/s, queue enqueue + drain, and the server's RSS,
//! on SQLite and PostgreSQL. The bench's `BENCH_*` knobs pass through (see
//! `crates/server/benches/control_plane/knobs.rs`); arguments after `bench` go to the bench.

use std::process::Command;

use anyhow::Context;
use molecule_testkit::PgCluster;

use crate::workspace::{cargo_bin, run_in, workspace_root};

/// Builds, starts PostgreSQL if needed, and runs the bench.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root()?;
    println!("==> building the release binaries (molecule-server, molecule-echo-agent)");
    run_in(
        &root,
        Command::new(cargo_bin()).args([
            "build",
            "--release",
            "--locked",
            "-p",
            "molecule-server",
            "--bin",
            "molecule-server",
            "-p",
            "molecule-echo-agent",
            "--bin",
            "molecule-echo-agent",
        ]),
    )?;
    let metadata = crate::boundaries::metadata(&root.join("Cargo.toml"))?;
    let release = metadata.target_directory.as_std_path().join("release");

    let cluster;
    let (database_url, postgres) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => (url, "TEST_DATABASE_URL"),
        _ => {
            cluster = PgCluster::start().context("cannot start PostgreSQL for the bench")?;
            println!(
                "==> PostgreSQL: throwaway cluster on port {}",
                cluster.port()
            );
            (
                cluster.url(),
                "a throwaway local cluster (fsync, full_page_writes and synchronous_commit off)",
            )
        }
    };
    println!("==> cargo bench -p molecule-server --bench control_plane");
    run_in(
        &root,
        Command::new(cargo_bin())
            .args([
                "bench",
                "--locked",
                "-p",
                "molecule-server",
                "--bench",
                "control_plane",
                "--",
            ])
            .args(args)
            .env("TEST_DATABASE_URL", database_url)
            .env("BENCH_POSTGRES", postgres)
            .env("MOLECULE_SERVER_BIN", release.join("molecule-server"))
            .env("MOLECULE_ECHO_AGENT", release.join("molecule-echo-agent"))
            .env("RUST_BACKTRACE", "0"),
    )
}
