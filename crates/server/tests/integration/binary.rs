//! The `molecule-server` binary, run as a real process: start-up on the defaults, graceful
//! shutdown, and a clear error with a non-zero exit for each kind of bad configuration.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a start-up may take before the test gives up (a bound, not a synchronisation).
const STARTUP: Duration = Duration::from_secs(60);

/// A running server process, killed on drop.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    base: String,
}

/// A command for the binary in `cwd` with no inherited configuration.
fn command(cwd: &Path) -> Command {
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
    fn start(cmd: Command) -> Server {
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

#[test]
fn starts_on_the_sqlite_default_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    assert!(
        dir.path().join("data/molecule.db").is_file(),
        "the default database is ./data/molecule.db"
    );

    let (status, body) = get_json(&server.url("/health"));
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    let (status, body) = get_json(&server.url("/buildinfo"));
    assert_eq!(status, 200);
    let sha = body["git_sha"].as_str().unwrap();
    assert!(
        sha == "unknown" || (sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())),
        "{sha}"
    );

    let (status, body) = get_text(&server.url("/no/such/route"));
    assert_eq!(status, 404);
    assert_eq!(body, "404 page not found");

    let (exit, log) = server.terminate();
    assert!(exit.success(), "exit {exit:?}; log:\n{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("shutdown signal received")),
        "{log:?}"
    );
}

#[test]
fn json_logs_and_a_dotenv_file_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# settings\nexport MOLECULE_DATA_DIR=state-from-dotenv\nMOLECULE_LOG_FORMAT=json\n",
    )
    .unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(dir.path().join("state-from-dotenv/molecule.db").is_file());
    let line = server.log.last().unwrap();
    let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert!(
        parsed["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("listening on")
    );
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn environment_wins_over_dotenv_and_flags_win_over_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "MOLECULE_DATA_DIR=from-dotenv\n").unwrap();
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_DATA_DIR", "from-env")
        .args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(dir.path().join("from-env/molecule.db").is_file());
    assert!(!dir.path().join("from-dotenv").exists());
    drop(server);

    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_DATA_DIR", "from-env")
        .args(["--port", "0", "--data-dir", "from-flag"]);
    let server = Server::start(cmd);
    assert!(dir.path().join("from-flag/molecule.db").is_file());
    drop(server);
}

#[test]
fn help_lists_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_molecule-server"))
        .arg("--help")
        .env("DATABASE_URL", "postgres://u:hunter2@h/db")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for item in [
        "--database-url",
        "DATABASE_URL",
        "--data-dir",
        "MOLECULE_DATA_DIR",
        "--host",
        "--port",
        "PORT",
        "--log-format",
        "--secrets-encryption-key",
        "SECRETS_ENCRYPTION_KEY",
        "--header-read-timeout-seconds",
        "MOLECULE_HEADER_READ_TIMEOUT_SECONDS",
        "--body-read-timeout-seconds",
        "MOLECULE_BODY_READ_TIMEOUT_SECONDS",
        "--max-connections",
        "MOLECULE_MAX_CONNECTIONS",
    ] {
        assert!(help.contains(item), "--help lacks {item}:\n{help}");
    }
    assert!(
        !help.contains("hunter2"),
        "--help shows the database password"
    );
}

#[test]
fn production_without_a_usable_secrets_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // No key at all.
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_ENV", "production")
        .env("ADMIN_TOKEN", "a");
    let err = run_failing(cmd);
    assert!(err.contains("SECRETS_ENCRYPTION_KEY is required"), "{err}");
    // A malformed key (32 base64 characters decode to 24 bytes), in production or not.
    for env in ["production", "staging"] {
        let mut cmd = command(dir.path());
        cmd.env("MOLECULE_ENV", env)
            .env("ADMIN_TOKEN", "a")
            .env("SECRETS_ENCRYPTION_KEY", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB");
        let err = run_failing(cmd);
        assert!(err.contains("invalid SECRETS_ENCRYPTION_KEY"), "{err}");
        assert!(
            !err.contains("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"),
            "the key reached the log: {err}"
        );
    }
    // Nothing was created: the refusal comes before the database.
    assert!(!dir.path().join("data/molecule.db").exists());
}

#[test]
fn a_valid_production_key_starts_and_a_generated_key_is_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_ENV", "production")
        .env("ADMIN_TOKEN", "a")
        .env(
            "SECRETS_ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(!dir.path().join("data/secrets_key").exists());
    let (exit, _) = server.terminate();
    assert!(exit.success());
    // Outside production without a key: one is generated into the data directory.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("ADMIN_TOKEN", "a").args(["--port", "0"]);
    let server = Server::start(cmd);
    let key = std::fs::read_to_string(dir.path().join("data/secrets_key")).unwrap();
    assert_eq!(key.trim().len(), 44);
    assert!(!server.log.iter().any(|l| l.contains(key.trim())));
    assert!(server.log.iter().any(|l| l.contains("secrets_key")));
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn an_unparsable_database_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("DATABASE_URL", "mysql://root:hunter2@localhost/db");
    let err = run_failing(cmd);
    assert!(err.contains("invalid DATABASE_URL"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password reached the log: {err}"
    );
}

#[test]
fn an_unreachable_postgres_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bound and released just now.
    let port = molecule_testkit::free_port().unwrap();
    let mut cmd = command(dir.path());
    cmd.env(
        "DATABASE_URL",
        format!("postgres://u:hunter2@127.0.0.1:{port}/molecule"),
    );
    let err = run_failing(cmd);
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password reached the log: {err}"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = command(dir.path());
    cmd.args(["--port", &port]);
    let err = run_failing(cmd);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file can never be created, even by root.
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["--data-dir", "file/data"]);
    let err = run_failing(cmd);
    assert!(
        err.contains("data directory file/data is not usable"),
        "{err}"
    );
}

#[tokio::test]
async fn starts_on_postgres_when_database_url_names_it() {
    let db = molecule_store::testing::TestStore::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("DATABASE_URL", db.url()).args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(
        server
            .log
            .iter()
            .any(|l| l.contains("PostgreSQL at 127.0.0.1")),
        "{:?}",
        server.log
    );
    assert!(
        !dir.path().join("data/molecule.db").exists(),
        "no SQLite file when on PostgreSQL"
    );
    let resp = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn a_generated_admin_token_guards_admin_routes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env_remove("ADMIN_TOKEN")
        .env_remove("MOLECULE_ENV")
        .args(["--port", "0"]);
    let server = Server::start(cmd);
    let file = dir.path().join("data/admin_token");
    let token = std::fs::read_to_string(&file).expect("the generated admin token file");
    assert_eq!(token.trim().len(), 43);
    assert!(
        !server.log.iter().any(|l| l.contains(token.trim())),
        "the token value reached the log"
    );
    assert!(server.log.iter().any(|l| l.contains("admin_token")));
    block_on(async {
        let http = reqwest::Client::new();
        let url = server.url("/admin/liveness");
        let refused = http.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let ok = http
            .get(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let body: serde_json::Value = ok.json().await.unwrap();
        assert!(body["subsystems"].is_object(), "{body}");
    });
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

/// Two server processes on one PostgreSQL database: an event caused through one reaches a
/// WebSocket client of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_share_events() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let db = molecule_store::testing::TestStore::postgres().await;
    let start = |dir: &std::path::Path| {
        let mut cmd = command(dir);
        cmd.env("DATABASE_URL", db.url())
            .env("ADMIN_TOKEN", "two-replicas-admin")
            .args(["--port", "0"]);
        Server::start(cmd)
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(dir_a.path());
    let b = start(dir_b.path());

    // A canvas client on B.
    let mut request = b
        .url("/ws")
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        "Bearer two-replicas-admin".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    // B announced "listening" only after it listened to the other replicas' events.
    let http = reqwest::Client::new();
    let created = http
        .post(a.url("/workspaces"))
        .bearer_auth("two-replicas-admin")
        .json(&serde_json::json!({"name": "made-on-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = socket.next().await {
            let text = match msg.unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(t) => t.to_string(),
                _ => continue,
            };
            let env: serde_json::Value = serde_json::from_str(&text).unwrap();
            if env["workspace_id"] == id.as_str() {
                return env;
            }
        }
        panic!("socket closed");
    })
    .await
    .expect("the event reached the other process");
    assert_eq!(got["event"], "WORKSPACE_PROVISIONING");
    assert_eq!(got["payload"]["name"], "made-on-a");
    drop(a);
    drop(b);
}

#[test]
fn an_unknown_backend_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_BACKEND", "kubernetes")
        .args(["--port", "0"]);
    let err = run_failing(cmd);
    assert!(
        err.contains("MOLECULE_BACKEND must be docker, ec2 or none"),
        "{err}"
    );
}

#[test]
fn docker_asked_for_but_unreachable_is_a_clear_error_and_unset_falls_back_to_none() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-daemon.sock");
    let host = format!("unix://{}", socket.display());
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_BACKEND", "docker")
        .env("DOCKER_HOST", &host)
        .args(["--port", "0"]);
    let err = run_failing(cmd);
    assert!(err.contains("the Docker daemon does not answer"), "{err}");

    let mut cmd = command(dir.path());
    cmd.env_remove("MOLECULE_BACKEND")
        .env("DOCKER_HOST", &host)
        .args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(
        server.log.iter().any(|l| l.contains("backend: none")),
        "{:?}",
        server.log
    );
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

/// With the machine's Docker daemon answering, an unset `MOLECULE_BACKEND` picks Docker.
#[test]
fn unset_backend_picks_docker_when_its_daemon_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env_remove("MOLECULE_BACKEND")
        .env_remove("DOCKER_HOST")
        .args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(
        server.log.iter().any(|l| l.contains("backend: docker")),
        "Docker is required for this test (CI runs it): {:?}",
        server.log
    );
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

/// Messages queued for a busy agent survive a restart of the server: the new process delivers
/// each of them once, when the agent reports a free slot.
async fn queued_messages_survive_a_restart(db: molecule_store::testing::TestStore) {
    use serde_json::{Value, json};
    let agent = crate::common::agent::TestAgent::start().await;
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut cmd = command(dir.path());
        cmd.env("DATABASE_URL", db.url())
            .env("MOLECULE_ENV", "development")
            .args(["--port", "0"]);
        Server::start(cmd)
    };
    let http = reqwest::Client::new();
    let post = async |server: &Server, path: &str, token: Option<&str>, body: Value| {
        let mut req = http.post(server.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let server = start();
    let (status, created) = post(
        &server,
        "/workspaces",
        None,
        json!({"name": "worker", "runtime": "external"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["connection"]["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let register = json!({"id": id, "url": agent.url, "agent_card": {"name": "worker"}});
    let (status, reply) = post(&server, "/registry/register", Some(&token), register).await;
    assert_eq!(status, 200, "{reply}");
    let busy = json!({"workspace_id": id, "active_tasks": 1});
    let (status, _) = post(&server, "/registry/heartbeat", Some(&token), busy).await;
    assert_eq!(status, 200);
    let mut queued = Vec::new();
    for n in ["r-1", "r-2"] {
        let body = json!({"method": "message/send", "params": {"message": {
            "role": "user", "messageId": n, "parts": [{"kind": "text", "text": n}]}}});
        let (status, reply) = post(&server, &format!("/workspaces/{id}/a2a"), None, body).await;
        assert_eq!(status, 202, "{reply}");
        queued.push(reply["queue_id"].as_str().unwrap().to_owned());
    }
    let (exit, _) = server.terminate();
    assert!(exit.success());
    assert!(agent.received().is_empty());

    let server = start();
    let free = json!({"workspace_id": id, "active_tasks": 0});
    let (status, _) = post(&server, "/registry/heartbeat", Some(&token), free).await;
    assert_eq!(status, 200);
    agent.wait_for(2).await;
    for queue_id in &queued {
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            let item: Value = http
                .get(server.url(&format!("/workspaces/{id}/a2a/queue/{queue_id}")))
                .header("X-Workspace-ID", &id)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if item["status"] == "completed" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{item}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(agent.deliveries_of("r-1"), 1);
    assert_eq!(agent.deliveries_of("r-2"), 1);
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

molecule_store::on_both_backends!(queued_messages_survive_a_restart);

/// The permission bits of `path`.
#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every entry of `dir` with its mode.
#[cfg(unix)]
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut all: Vec<(String, u32)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect();
    all.sort();
    all
}

/// A fresh data directory and everything the server writes in it (the database with its WAL
/// files, the generated admin token and secrets key) are private to the server's user.
#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["--port", "0"]);
    let server = Server::start(cmd);
    let data = dir.path().join("data");
    let token = std::fs::read_to_string(data.join("admin_token")).unwrap();
    // A write, so that SQLite has its -wal and -shm files open.
    block_on(async {
        let r = reqwest::Client::new()
            .post(server.url("/workspaces"))
            .bearer_auth(token.trim())
            .json(&serde_json::json!({"name": "private", "runtime": "external"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    let files = modes(&data);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "admin_token",
        "molecule.db",
        "molecule.db-shm",
        "molecule.db-wal",
        "secrets_key",
    ] {
        assert!(names.contains(&expected), "no {expected} in {files:?}");
    }
    assert_eq!(mode(&data), 0o700, "the data directory");
    for (name, m) in &files {
        assert_eq!(*m, 0o600, "{name} in {files:?}");
    }
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

/// A data directory and database left open to others (an older version, a copy) are
/// tightened at start, with a warning.
#[cfg(unix)]
#[test]
fn loose_modes_in_an_existing_data_directory_are_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["--port", "0"]);
    let (exit, _) = Server::start(cmd).terminate();
    assert!(exit.success());
    let data = dir.path().join("data");
    let loosen = |path: &Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
    };
    loosen(&data, 0o755);
    for (name, _) in modes(&data) {
        loosen(&data.join(name), 0o644);
    }

    let mut cmd = command(dir.path());
    cmd.args(["--port", "0"]);
    let server = Server::start(cmd);
    assert_eq!(mode(&data), 0o700);
    let files = modes(&data);
    assert!(files.iter().any(|(n, _)| n == "molecule.db"), "{files:?}");
    for (name, m) in &files {
        assert_eq!(*m, 0o600, "{name} in {files:?}");
    }
    assert!(
        server.log.iter().any(|l| l.contains("open to other users")),
        "{:?}",
        server.log
    );
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

/// The connection settings come from the environment: a request head left unfinished is cut
/// off after `MOLECULE_HEADER_READ_TIMEOUT_SECONDS`.
#[test]
fn the_header_read_timeout_is_configured_from_the_environment() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_HEADER_READ_TIMEOUT_SECONDS", "1")
        .env("MOLECULE_BODY_READ_TIMEOUT_SECONDS", "1")
        .env("MOLECULE_MAX_CONNECTIONS", "8")
        .args(["--port", "0"]);
    let server = Server::start(cmd);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    // The bound that fails the test: the default timeout (10 s) would pass it.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the unfinished head was not cut off: {other:?}"),
    }
    // A late body is a JSON 408.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(
            b"POST /registry/check-access HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{",
        )
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.ends_with(r#"{"error":"request body timeout"}"#),
        "{text}"
    );
    let (exit, _) = server.terminate();
    assert!(exit.success());
}
