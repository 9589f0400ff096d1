//! Project automation for molecule-rs. Run as `cargo xtask <task>`:
//!
//! - `ci`: the one gate: formatting, clippy (warnings are errors), the crate-boundary check,
//!   tidy, cargo-deny, and every test (nextest) against SQLite and a throwaway PostgreSQL cluster.
//! - `boundaries`: only the crate-boundary check.
//! - `tidy`: the checks over the source text (one owner of the backend, file length, module
//!   cycles); see `tidy/mod.rs`.
//! - `image [echo|server]`: the echo agent (default) or the server, statically linked, in the
//!   local image `molecule-echo-agent:dev` or `molecule-server:dev` (`cargo xtask ci` builds
//!   both before the tests).
//! - `bench`: issue 13's performance table (A2A, heartbeats, queue, RSS on SQLite and
//!   PostgreSQL); not part of `ci`. See `bench.rs`.

mod bench;
mod boundaries;
mod ci;
mod image;
mod tidy;
mod workspace;

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("boundaries") => boundaries::run(),
        Some("image") => image::run(&args[1..]),
        Some("tidy") => tidy::run(),
        Some("help" | "--help" | "-h") | None => {
            println!("usage: cargo xtask <ci|boundaries|tidy|image|bench>");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}; try `cargo xtask help`"),
    }
}
