//! Project automation for molecule-rs. Run as `cargo xtask <task>`:
//!
//! - `ci`: the one gate: formatting, clippy (warnings are errors), the crate-boundary check,
//!   cargo-deny, and every test (nextest) against SQLite and a throwaway PostgreSQL cluster.
//! - `boundaries`: only the crate-boundary check.
//! - `image`: the echo agent, statically linked, in the local image `molecule-echo-agent:dev`
//!   (`cargo xtask ci` builds it before the tests).

mod boundaries;
mod ci;
mod image;

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("boundaries") => boundaries::run(),
        Some("image") => image::run(),
        Some("help" | "--help" | "-h") | None => {
            println!("usage: cargo xtask <ci|boundaries|image>");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}; try `cargo xtask help`"),
    }
}
