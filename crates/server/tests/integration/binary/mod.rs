//! The `molecule-server` binary, run as a real process: start-up on the defaults, graceful
//! shutdown, and a clear error with a non-zero exit for each kind of bad configuration. Here:
//! the harness that runs the binary and reads its log.

mod crash;
mod healthcheck;
mod refusals;
mod startup;
mod state;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a start-up may take before the test gives up (a bound, not a synchronisation).
const STARTUP: Duration = Duration::from_secs(60);

/// A running server process, killed on drop.
pub(crate) struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// What it logged up to now.
    pub(crate) log: Vec<String>,
    /// Its `http://host:port`.
    pub(crate) base: String,
}

/// A command for the binary in `cwd` with no inherited configuration.
pub(crate) fn command(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_molecule-server"));
    cmd.current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("MOLECULE_DATA_DIR")
        .env_remove("MOLECULE_HOST")
        .env_remove("PORT")
        .env_remove("MOLECULE_LOG_FORMAT")
        .env_remove("ADMIN_TOKEN")
        .env_remove("MOLECULE_ENV")
        .env_remove("SECRETS_ENCRYPTION_KEY")
        .env_remove("MOLECULE_HEADER_READ_TIMEOUT_SECONDS")
        .env_remove("MOLECULE_BODY_READ_TIMEOUT_SECONDS")
        .env_remove("MOLECULE_MAX_CONNECTIONS")
        .env("RUST_LOG", "info")
        .env("MOLECULE_BACKEND", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn spawn(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.spawn().expect("spawn molecule-server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

impl Server {
    /// Starts the server and waits for its "listening on" line.
    pub(crate) fn start(cmd: Command) -> Server {
        let (child, lines) = spawn(cmd);
        let mut server = Server {
            child,
            lines,
            log: Vec::new(),
            base: String::new(),
        };
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = line.find("listening on http://") {
                        server.base = line[i + "listening on ".len()..].trim().to_owned();
                        server.log.push(line);
                        return server;
                    }
                    server.log.push(line);
                }
                Err(_) => panic!("server did not start; log:\n{}", server.log.join("\n")),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the rest of the log.
    fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        let mut log = std::mem::take(&mut self.log);
        log.extend(self.lines.try_iter());
        (status, log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command that must fail; returns its stderr.
fn run_failing(mut cmd: Command) -> String {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .expect("run molecule-server");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{stderr}"
    );
    stderr
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn get_text(url: &str) -> (u16, String) {
    block_on(async {
        let resp = reqwest::get(url).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

fn get_json(url: &str) -> (u16, serde_json::Value) {
    let (status, text) = get_text(url);
    (status, serde_json::from_str(&text).unwrap())
}

/// `POST url` with a JSON body and `token` as the bearer (if any): status and JSON (or Null).
pub(crate) async fn post_json(
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}
