//! What the process keeps: a private data directory, PostgreSQL when the URL names it, events
//! shared by two processes on one database, and queued messages across a restart.

use std::path::Path;
use std::time::Duration;

use super::{Server, block_on, command, post_json};
use crate::common::{assert_status, connection_of, eventually};

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
    let made_on_a = serde_json::json!({"name": "made-on-a"});
    let created = post_json(
        &a.url("/workspaces"),
        Some("two-replicas-admin"),
        &made_on_a,
    )
    .await;
    let id = assert_status(created, 201)["id"]
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
        post_json(&server.url(path), token, &body).await
    };
    let server = start();
    let worker = json!({"name": "worker", "runtime": "external"});
    let created = assert_status(post(&server, "/workspaces", None, worker).await, 201);
    let (id, token) = connection_of(&created);
    let id = id.to_string();
    let register = json!({"id": id, "url": agent.url, "agent_card": {"name": "worker"}});
    let registered = post(&server, "/registry/register", Some(&token), register).await;
    assert_status(registered, 200);
    let busy = json!({"workspace_id": id, "active_tasks": 1});
    assert_status(
        post(&server, "/registry/heartbeat", Some(&token), busy).await,
        200,
    );
    let mut queued = Vec::new();
    for n in ["r-1", "r-2"] {
        let body = json!({"method": "message/send", "params": {"message": {
            "role": "user", "messageId": n, "parts": [{"kind": "text", "text": n}]}}});
        let reply = post(&server, &format!("/workspaces/{id}/a2a"), None, body).await;
        let reply = assert_status(reply, 202);
        queued.push(reply["queue_id"].as_str().unwrap().to_owned());
    }
    let (exit, _) = server.terminate();
    assert!(exit.success());
    assert!(agent.received().is_empty());

    let server = start();
    let free = json!({"workspace_id": id, "active_tasks": 0});
    assert_status(
        post(&server, "/registry/heartbeat", Some(&token), free).await,
        200,
    );
    agent.wait_for(2).await;
    for queue_id in &queued {
        eventually("the queued message is completed", || async {
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
            item["status"] == "completed"
        })
        .await;
    }
    assert_eq!(agent.deliveries_of("r-1"), 1);
    assert_eq!(agent.deliveries_of("r-2"), 1);
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

molecule_store::on_both_backends!(queued_messages_survive_a_restart);
