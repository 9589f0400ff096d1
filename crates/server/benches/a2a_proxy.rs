//! The A2A proxy benchmark (`cargo bench -p molecule-server --bench a2a_proxy`).
//!
//! One run measures A2A `message/send` round trips per second and latency percentiles against
//! three targets that all end at the same agent process:
//!
//! - **direct**: the `molecule-echo-agent` binary on loopback;
//! - **nginx**: nginx as a plain reverse proxy to that agent (keep-alive upstream);
//! - **proxy**: this server (in process, dev mode, SQLite in a temp dir, no backend) at
//!   `POST /workspaces/:id/a2a`, the agent registered as an external workspace. Every call
//!   goes through the whole HTTP pipeline and writes an activity row, as in production.
//!
//! Each target gets the same load: `BENCH_CLIENTS` (16) concurrent clients on one keep-alive
//! reqwest client, each sending one request after the other for `BENCH_WARMUP_SECONDS` (1)
//! then `BENCH_SECONDS` (5). Only requests begun and finished inside the measured window
//! count; an answer is correct when it is 200 and echoes the text sent, anything else is an
//! error. No assertion is made on speed: it prints one table and the ratios.
//!
//! Needs `nginx` on the `PATH` (Debian: `apt-get install nginx-light`); the agent binary is
//! built with `cargo build --release -p molecule-echo-agent` unless `MOLECULE_ECHO_AGENT`
//! names one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use molecule_server::Security;
use molecule_server::{AppState, HttpSettings, router};
use molecule_store::{DatabaseUrl, Store};
use serde_json::{Value, json};

/// How long a component may take to come up.
const READY_DEADLINE: Duration = Duration::from_secs(60);

fn main() -> std::process::ExitCode {
    // `cargo bench` passes `--bench`; test runners list (`--list`) or run bench targets in
    // test mode without it: there is no test here, so answer an empty list and do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return std::process::ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("a2a_proxy bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The load every target gets.
#[derive(Debug, Clone, Copy)]
struct Load {
    clients: usize,
    warmup: Duration,
    measured: Duration,
}

impl Load {
    fn from_env() -> anyhow::Result<Self> {
        let num = |name: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={v:?} is not a whole number")),
                Err(_) => Ok(default),
            }
        };
        Ok(Load {
            clients: usize::try_from(num("BENCH_CLIENTS", 16)?.max(1))?,
            warmup: Duration::from_secs(num("BENCH_WARMUP_SECONDS", 1)?),
            measured: Duration::from_secs(num("BENCH_SECONDS", 5)?.max(1)),
        })
    }
}

fn run() -> anyhow::Result<()> {
    let load = Load::from_env()?;
    let nginx_bin = find_on_path("nginx").context(
        "the `nginx` binary is not on the PATH; install it (Debian/Ubuntu: \
         `apt-get install -y nginx-light`, or `nginx`) and run the bench again",
    )?;
    let agent_bin = echo_agent_binary()?;
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;

    // The server gets its own runtime (as its own process would); the load its own.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()?;
    let server = server_rt.block_on(start_server(dir.path()))?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("load")
        .build()?;

    client_rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(load.clients * 2)
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()?;
        let (workspace, token) = external_workspace(&http, &server).await?;
        let agent_port = free_port()?;
        let agent_url = format!("http://127.0.0.1:{agent_port}");
        let _agent = start_agent(
            &agent_bin,
            dir.path(),
            agent_port,
            &server,
            &workspace,
            &token,
        )?;
        wait_until_registered(&http, &server, &workspace, &agent_url).await?;
        let nginx_port = free_port()?;
        let _nginx = Nginx::start(&nginx_bin, dir.path(), nginx_port, agent_port)?;
        wait_for_health(&http, &format!("http://127.0.0.1:{nginx_port}/health")).await?;

        let targets = [
            ("direct (echo agent)", format!("{agent_url}/")),
            ("nginx -> agent", format!("http://127.0.0.1:{nginx_port}/")),
            (
                "molecule proxy -> agent",
                format!("{server}/workspaces/{workspace}/a2a"),
            ),
        ];
        println!(
            "A2A message/send round trips: {} clients, {} s measured after {} s warm-up, \
             {} CPU(s)",
            load.clients,
            load.measured.as_secs(),
            load.warmup.as_secs(),
            std::thread::available_parallelism().map_or(0, usize::from),
        );
        let mut results = Vec::new();
        for (name, url) in &targets {
            results.push((*name, drive(&http, url, load).await));
        }
        print_table(&results);
        anyhow::Ok(())
    })?;
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// Starts the real router over SQLite in `dir`, dev mode, no backend, no rate limit to speak
/// of; answers its base URL.
async fn start_server(dir: &Path) -> anyhow::Result<String> {
    let url = DatabaseUrl::resolve(None, dir)?;
    let store = Store::connect(&url).await?;
    let http = HttpSettings {
        rate_limit: u32::MAX,
        ..HttpSettings::default()
    };
    let state = AppState::with_backend(store, Security::dev(), None, "http://127.0.0.1".into())
        .with_http(http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(molecule_server::http_server::serve(
        listener,
        router(state),
        molecule_server::http_server::ServerSettings::default(),
        std::future::pending(),
        Duration::ZERO,
    ));
    Ok(base)
}

/// `POST /workspaces` with `runtime: external`: the id and its token.
async fn external_workspace(
    http: &reqwest::Client,
    server: &str,
) -> anyhow::Result<(String, String)> {
    let reply = http
        .post(format!("{server}/workspaces"))
        .json(&json!({"name": "bench-echo", "runtime": "external"}))
        .send()
        .await?;
    let status = reply.status();
    let body: Value = reply.json().await?;
    if status != 201 {
        bail!("POST /workspaces answered {status}: {body}");
    }
    let id = body["id"].as_str().context("no workspace id")?.to_owned();
    let token = body["connection"]["auth_token"]
        .as_str()
        .context("no connection.auth_token")?
        .to_owned();
    Ok((id, token))
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the agent binary on `port`; it registers itself with the server.
fn start_agent(
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

/// Polls `GET /workspaces/:id` until the agent registered its URL and is online.
async fn wait_until_registered(
    http: &reqwest::Client,
    server: &str,
    workspace: &str,
    agent_url: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(reply) = http
            .get(format!("{server}/workspaces/{workspace}"))
            .send()
            .await
            && let Ok(body) = reply.json::<Value>().await
            && body["url"] == agent_url
            && body["status"] == "online"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the echo agent did not register within {READY_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `url` until it answers 200.
async fn wait_for_health(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
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

/// nginx in the foreground with a generated configuration; stopped when dropped.
struct Nginx {
    child: Child,
    bin: PathBuf,
    prefix: PathBuf,
}

impl Nginx {
    fn start(bin: &Path, dir: &Path, port: u16, agent_port: u16) -> anyhow::Result<Self> {
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs"))?;
        let p = prefix.display();
        let conf = format!(
            "worker_processes auto;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \taccess_log off;\n\
             \tclient_body_temp_path {p}/client_body;\n\
             \tproxy_temp_path {p}/proxy;\n\
             \tfastcgi_temp_path {p}/fastcgi;\n\
             \tuwsgi_temp_path {p}/uwsgi;\n\
             \tscgi_temp_path {p}/scgi;\n\
             \tupstream agent {{\n\
             \t\tserver 127.0.0.1:{agent_port};\n\
             \t\tkeepalive 64;\n\
             \t}}\n\
             \tserver {{\n\
             \t\tlisten 127.0.0.1:{port};\n\
             \t\tlocation / {{\n\
             \t\t\tproxy_pass http://agent;\n\
             \t\t\tproxy_http_version 1.1;\n\
             \t\t\tproxy_set_header Connection \"\";\n\
             \t\t}}\n\
             \t}}\n\
             }}\n"
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        Ok(Nginx {
            child,
            bin: bin.to_owned(),
            prefix,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A fast shutdown through the master, so its workers go too; a kill if that fails.
        let stopped = Command::new(&self.bin)
            .arg("-p")
            .arg(&self.prefix)
            .arg("-e")
            .arg(self.prefix.join("logs/error.log"))
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What one target did in the measured window.
#[derive(Debug, Default)]
struct Outcome {
    /// Latencies of the correct round trips, sorted.
    latencies: Vec<Duration>,
    /// Wrong status, wrong answer or transport failures.
    errors: usize,
    /// The measured window.
    window: Duration,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }

    /// The nearest-rank percentile `p` (0–100).
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// `load.clients` loops sending `message/send` to `url` one after the other.
async fn drive(http: &reqwest::Client, url: &str, load: Load) -> Outcome {
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.measured;
    let mut tasks = Vec::new();
    for client in 0..load.clients {
        let http = http.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = 0u64;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                n += 1;
                let text = format!("bench {client}-{n}");
                let ok = round_trip(&http, &url, &text).await;
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
    let mut outcome = Outcome {
        window: load.measured,
        ..Outcome::default()
    };
    for task in tasks {
        match task.await {
            Ok((latencies, errors)) => {
                outcome.latencies.extend(latencies);
                outcome.errors += errors;
            }
            Err(_) => outcome.errors += 1,
        }
    }
    outcome.latencies.sort_unstable();
    outcome
}

/// One `message/send`; true when the answer is 200 and echoes `text`.
async fn round_trip(http: &reqwest::Client, url: &str, text: &str) -> bool {
    let body = json!({
        "jsonrpc": "2.0",
        "id": text,
        "method": "message/send",
        "params": {"message": {
            "role": "user",
            "messageId": text,
            "parts": [{"kind": "text", "text": text}],
        }},
    });
    let Ok(reply) = http.post(url).json(&body).send().await else {
        return false;
    };
    if reply.status() != 200 {
        return false;
    }
    let Ok(answer) = reply.json::<Value>().await else {
        return false;
    };
    answer
        .pointer("/result/parts/0/text")
        .and_then(Value::as_str)
        == Some(text)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print_table(results: &[(&str, Outcome)]) {
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "target", "req/s", "p50", "p95", "p99", "errors"
    );
    for (name, o) in results {
        println!(
            "{:<26} {:>10.0} {:>10} {:>10} {:>10} {:>7}",
            name,
            o.per_second(),
            millis(o.percentile(50.0)),
            millis(o.percentile(95.0)),
            millis(o.percentile(99.0)),
            o.errors,
        );
    }
    let [(_, direct), (_, nginx), (_, proxy)] = results else {
        return;
    };
    println!();
    for (label, base) in [("proxy/direct", direct), ("proxy/nginx", nginx)] {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let lat = |p: f64| {
            ratio(
                proxy.percentile(p).as_secs_f64(),
                base.percentile(p).as_secs_f64(),
            )
        };
        println!(
            "{label:<13} req/s {:>5.2}x   p50 {:>5.2}x   p95 {:>5.2}x   p99 {:>5.2}x",
            ratio(proxy.per_second(), base.per_second()),
            lat(50.0),
            lat(95.0),
            lat(99.0),
        );
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The first `name` on the `PATH` (and `/usr/sbin`, where Debian puts nginx).
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `MOLECULE_ECHO_AGENT`, else the release build of the workspace's `molecule-echo-agent`.
fn echo_agent_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MOLECULE_ECHO_AGENT") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("MOLECULE_ECHO_AGENT={} is not a file", path.display());
        }
        return Ok(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    eprintln!("building molecule-echo-agent (release)...");
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "molecule-echo-agent",
            "--bin",
            "molecule-echo-agent",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo to build molecule-echo-agent")?;
    if !output.status.success() {
        bail!("cargo build -p molecule-echo-agent failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "molecule-echo-agent"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no molecule-echo-agent executable")
}
