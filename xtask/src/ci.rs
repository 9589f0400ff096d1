//! `cargo xtask ci`: the one gate every change passes.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use molecule_testkit::PgCluster;

use crate::workspace::{cargo_bin, run_in, workspace_root};

/// Runs every step in order and stops at the first failure, naming it.
pub fn run() -> anyhow::Result<()> {
    let root = workspace_root()?;
    step("formatting", || {
        cargo(&root, &["fmt", "--all", "--", "--check"])
    })?;
    step("clippy", || {
        cargo(
            &root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        )
    })?;
    step("crate boundaries", crate::boundaries::run)?;
    step("tidy", crate::tidy::run)?;
    step("cargo deny", || deny(&root))?;
    step("echo agent image", || docker_image(crate::image::echo))?;
    step("server image", || docker_image(crate::image::server))?;
    step("moto_server (local EC2 API)", moto)?;
    step("sshd (EC2 files and terminal tests)", sshd)?;
    step("a2a-sdk (Python A2A SDK)", || python_pins(&root, "a2a_sdk"))?;
    step("mcp (Python MCP SDK)", || python_pins(&root, "mcp_sdk"))?;
    step("openapi-spec-validator", || python_pins(&root, "openapi"))?;
    step("tests", || tests(&root))?;
    println!("\ncargo xtask ci: all steps passed");
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    println!("\n==> {name}");
    f().with_context(|| format!("ci step `{name}` failed"))
}

fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    run_in(root, Command::new(cargo_bin()).args(args))
}

/// Whether `cargo <sub> --version` works.
fn has_subcommand(sub: &str) -> bool {
    Command::new(cargo_bin())
        .args([sub, "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs a cargo subcommand from crates.io if it is missing.
fn ensure_installed(root: &Path, sub: &str, krate: &str) -> anyhow::Result<()> {
    if has_subcommand(sub) {
        return Ok(());
    }
    println!("{krate} is not installed: installing it from crates.io");
    cargo(root, &["install", "--locked", krate])
}

/// cargo-deny: bans, licenses and sources always; advisories when the advisory database can
/// be fetched (this machine may have no route to it), saying so when it cannot.
fn deny(root: &Path) -> anyhow::Result<()> {
    ensure_installed(root, "deny", "cargo-deny")?;
    cargo(root, &["deny", "check", "bans", "licenses", "sources"])?;
    let fetched = Command::new(cargo_bin())
        .args(["deny", "fetch", "db"])
        .current_dir(root)
        .output()
        .is_ok_and(|o| o.status.success());
    if fetched {
        cargo(root, &["deny", "check", "advisories"])
    } else {
        println!(
            "cargo deny: the advisory database could not be fetched (no network route to it): \
             advisories NOT checked in this run"
        );
        Ok(())
    }
}

/// An image the Docker tests run (the echo agent's, the server's). Without a Docker daemon the
/// step is skipped with a warning (the Docker tests then fail and say why), except under
/// `CI=true`, where it fails.
fn docker_image(build: fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
    if !crate::image::docker_available() {
        if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
            bail!("CI=true but no Docker daemon answers: the Docker backend cannot be tested");
        }
        println!("no Docker daemon answers: image NOT built, the Docker tests will fail");
        return Ok(());
    }
    build()
}

/// The EC2 tests need `moto_server` (Python moto): installed from PyPI when neither
/// `moto_server` nor `python3 -m moto.server` is available.
fn moto() -> anyhow::Result<()> {
    let works = |cmd: &mut Command| cmd.arg("--help").output().is_ok_and(|o| o.status.success());
    if works(&mut Command::new("moto_server"))
        || works(Command::new("python3").args(["-m", "moto.server"]))
    {
        println!("moto_server: available");
        return Ok(());
    }
    println!("moto_server is not installed: installing moto[server] from PyPI");
    run_in(
        Path::new("."),
        Command::new("python3").args(["-m", "pip", "install", "--quiet", "moto[server]"]),
    )
}

/// The EC2 files and terminal tests log in to a local OpenSSH server: Debian's
/// `openssh-server` is installed with apt-get when `/usr/sbin/sshd` is missing.
fn sshd() -> anyhow::Result<()> {
    if Path::new("/usr/sbin/sshd").exists() {
        println!("sshd: available");
        return Ok(());
    }
    println!("sshd is not installed: installing openssh-server with apt-get");
    run_in(
        Path::new("."),
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run_in(
        Path::new("."),
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "openssh-server",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The tests that drive the server with a real Python SDK (the A2A conformance tests,
/// `crates/server/tests/integration/a2a/sdk.rs`, with `tests/a2a_sdk`; the MCP bridge tests,
/// `crates/server/tests/integration/mcp.rs`, with `tests/mcp_sdk`; the OpenAPI document's
/// validation, `crates/server/tests/integration/openapi.rs`, with `tests/openapi`): the pins of
/// `crates/server/tests/<dir>/requirements.txt` are installed from PyPI into `python3` when
/// `crates/server/tests/python_pins.py <dir>` finds one missing or at another version.
fn python_pins(root: &Path, name: &str) -> anyhow::Result<()> {
    let dir = root.join("crates/server/tests").join(name);
    let check = || {
        Command::new("python3")
            .arg(root.join("crates/server/tests/python_pins.py"))
            .arg(&dir)
            .output()
            .context("cannot run python3")
    };
    let out = check()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        return Ok(());
    }
    println!("installing the {name} pins from PyPI");
    run_in(
        root,
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(dir.join("requirements.txt")),
    )?;
    let out = check()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("the {name} pins are still not importable after pip install");
    }
    Ok(())
}

/// Every test of the workspace with nextest. PostgreSQL comes from `TEST_DATABASE_URL` if set;
/// otherwise one throwaway cluster is started for the whole run and removed afterwards.
fn tests(root: &Path) -> anyhow::Result<()> {
    ensure_installed(root, "nextest", "cargo-nextest")?;
    let cluster;
    let database_url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            cluster = PgCluster::start().context("cannot start PostgreSQL for the tests")?;
            println!(
                "PostgreSQL for the tests: throwaway cluster on port {}",
                cluster.port()
            );
            cluster.url()
        }
    };
    run_in(
        root,
        Command::new(cargo_bin())
            .args([
                "nextest",
                "run",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--profile",
                "ci",
            ])
            .env("TEST_DATABASE_URL", database_url),
    )
}
