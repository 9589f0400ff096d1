//! What a crash can lose (ARCHITECTURE "Hot paths"): activity rows are written by a
//! group-commit writer, so a `kill -9` loses at most the rows accepted and not yet committed,
//! bounded by `MOLECULE_ACTIVITY_BUFFER`; a graceful stop (SIGTERM) writes every one of them.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Server, command, post_json};
use crate::common::agent::TestAgent;
use crate::common::{assert_status, connection_of};

/// The activity buffer of these runs: at most this many rows may be lost.
const BUFFER: usize = 8;

/// A dev-mode server on the SQLite database in `dir` whose group commits close only when its
/// small buffer is full (or at a barrier): rows stay pending for up to a minute.
fn start(dir: &Path) -> Server {
    let mut cmd = command(dir);
    cmd.env("MOLECULE_ENV", "development")
        .env("MOLECULE_ACTIVITY_BUFFER", BUFFER.to_string())
        .env("MOLECULE_WRITE_LINGER_MS", "60000")
        .args(["--port", "0"]);
    Server::start(cmd)
}

/// Sends `n` messages through the proxy, each answered by the agent.
async fn send(server: &Server, id: &str, from: usize, n: usize) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for i in from..from + n {
        let body = json!({"method": "message/send", "params": {"message": {
            "role": "user", "messageId": format!("m-{i}"), "parts": [{"kind": "text", "text": "hi"}]}}});
        let resp = http
            .post(server.url(&format!("/workspaces/{id}/a2a")))
            .json(&body)
            .send()
            .await
            .expect("a full buffer is flushed, never a stalled request");
        assert_eq!(resp.status(), 200, "message {i}");
    }
}

/// The `a2a_receive` rows stored for the workspace.
async fn stored(server: &Server, id: &str) -> usize {
    let url = server.url(&format!(
        "/workspaces/{id}/activity?type=a2a_receive&limit=500"
    ));
    let rows: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    rows.as_array().expect("a list of rows").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_loses_at_most_the_activity_buffer_and_a_stop_loses_nothing() {
    let agent = TestAgent::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let worker = json!({"name": "worker", "runtime": "external"});
    let created = assert_status(
        post_json(&server.url("/workspaces"), None, &worker).await,
        201,
    );
    let (id, token) = connection_of(&created);
    let id = id.to_string();
    let register = json!({"id": id, "url": agent.url, "agent_card": {"name": "worker"}});
    let url = server.url("/registry/register");
    assert_status(post_json(&url, Some(&token), &register).await, 200);

    let sent = 44;
    send(&server, &id, 0, sent).await;
    drop(server); // SIGKILL
    let server = start(dir.path());
    let after_kill = stored(&server, &id).await;
    assert!(
        after_kill + BUFFER >= sent && after_kill <= sent,
        "{after_kill} of {sent} rows survived a kill -9: more than the buffer ({BUFFER}) lost"
    );

    send(&server, &id, sent, 5).await;
    let (exit, log) = server.terminate();
    assert!(exit.success(), "{}", log.join("\n"));
    let server = start(dir.path());
    assert_eq!(
        stored(&server, &id).await,
        after_kill + 5,
        "a graceful stop writes every accepted row"
    );
}
