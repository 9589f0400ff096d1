//! Child processes and what finding them takes: a process killed on drop, free ports, tools on
//! the `PATH`, the workspace's release binaries, and waiting for a URL to answer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// How long a component may take to come up.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Killed {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Fails if the process has exited.
    pub fn check_running(&mut self, what: &str) -> anyhow::Result<()> {
        match self.0.try_wait()? {
            Some(status) => bail!("{what} exited with {status}"),
            None => Ok(()),
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The first `name` on the `PATH` (and `/usr/sbin`, where Debian puts nginx).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The file named by `$variable`, else the release build of `bin` of package `package`
/// (built with cargo now: cheap when it is up to date).
pub fn release_binary(variable: &str, package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{variable}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    eprintln!("building {bin} (release)...");
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", package, "--bin", bin])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run cargo to build {bin}"))?;
    if !output.status.success() {
        bail!("cargo build -p {package} --bin {bin} failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built no {bin} executable"))
}

/// Polls `url` until it answers 200.
pub async fn wait_for_health(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(reply) = http.get(url).send().await
            && reply.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {READY_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the echo agent binary on `port` for `workspace` (with its `token`); it registers
/// itself with the server at `server` and heartbeats every 30 s.
pub fn start_echo_agent(
    bin: &Path,
    dir: &Path,
    port: u16,
    server: &str,
    workspace: &str,
    token: &str,
) -> anyhow::Result<Killed> {
    let child = Command::new(bin)
        .env_clear()
        .env("WORKSPACE_ID", workspace)
        .env("PLATFORM_URL", server)
        .env("PORT", port.to_string())
        .env("AGENT_URL", format!("http://127.0.0.1:{port}"))
        .env("CONFIGS_DIR", dir)
        .env("MOLECULE_WORKSPACE_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    Ok(Killed(child))
}
