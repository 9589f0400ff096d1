//! Start-up: the SQLite default (health, build info, SIGTERM), the log format and `.env`,
//! the order of the configuration sources, `--help`, the generated admin token, the
//! connection settings, and the choice of backend.

use std::process::Command;
use std::time::Duration;

use super::{Server, block_on, command, get_json, get_text, run_failing};

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
