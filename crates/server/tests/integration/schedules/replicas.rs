//! Two `molecule-server` processes on one PostgreSQL database share the schedules: each due
//! run fires exactly once across them, counted at a real agent.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::agent::TestAgent;
use molecule_store::NewSchedule;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// How long a start-up may take before the test gives up (a bound, not a synchronisation).
const STARTUP: Duration = Duration::from_secs(60);

/// A running server process, killed on drop.
struct Server {
    child: Child,
    base: String,
    _lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary in dev mode on `url`, polling for due runs every second, and waits for
/// its "listening on" line.
fn start(url: &str, dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_molecule-server"))
        .current_dir(dir)
        .env_remove("ADMIN_TOKEN")
        .env_remove("MOLECULE_DATA_DIR")
        .env_remove("MOLECULE_HOST")
        .env_remove("PORT")
        .env("DATABASE_URL", url)
        .env("MOLECULE_ENV", "development")
        .env("MOLECULE_BACKEND", "none")
        .env("MOLECULE_SCHEDULER_POLL_SECONDS", "1")
        .env("RUST_LOG", "info")
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn molecule-server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Owned by a `Server` from here, so a failed start kills and reaps the process too.
    let mut server = Server {
        child,
        base: String::new(),
        _lines: rx,
    };
    let deadline = std::time::Instant::now() + STARTUP;
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = server
            ._lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("server did not start; log:\n{}", log.join("\n")));
        if let Some(i) = line.find("listening on http://") {
            server.base = line[i + "listening on ".len()..].trim().to_owned();
            return server;
        }
        log.push(line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_each_of_fifty_due_runs_exactly_once() {
    let db = TestStore::postgres().await;
    let agent = TestAgent::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = start(db.url(), dir.path());
    let b = start(db.url(), dir.path());
    let http = reqwest::Client::new();
    let post = async |server: &Server, path: &str, token: Option<&str>, body: Value| {
        let mut req = http.post(format!("{}{path}", server.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, created) = post(
        &a,
        "/workspaces",
        None,
        json!({"name": "worker", "runtime": "external"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let ws: molecule_domain::WorkspaceId = created["id"].as_str().unwrap().parse().unwrap();
    let token = created["connection"]["auth_token"].as_str().unwrap();
    let register = json!({"id": ws, "url": agent.url, "agent_card": {"name": "worker"}});
    let (status, reply) = post(&b, "/registry/register", Some(token), register).await;
    assert_eq!(status, 200, "{reply}");

    // Fifty runs, all due a minute ago (yearly, so none is due again afterwards), written in
    // one go while both replicas are polling.
    let due = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let schedules = db.schedules();
    let mut ids = Vec::new();
    for n in 0..50 {
        let new = NewSchedule {
            workspace_id: ws,
            name: format!("job-{n}"),
            cron_expr: "0 0 1 1 *".into(),
            timezone: "UTC".into(),
            prompt: format!("job-{n}"),
            enabled: true,
            next_run_at: Some(due),
            source: "runtime".into(),
        };
        ids.push(schedules.create(&new).await.unwrap().id);
    }
    agent.wait_for(50).await;
    // Every run is recorded once (claims released, next runs on 1 January)…
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = schedules.list(ws).await.unwrap();
        if rows.iter().all(|r| r.run_count >= 1) {
            assert!(
                rows.iter()
                    .all(|r| r.run_count == 1 && r.last_status == "ok")
            );
            let now = OffsetDateTime::now_utc();
            assert!(rows.iter().all(|r| r.next_run_at.unwrap() > now));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "runs not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // …so nothing is due any more, and the agent got each prompt exactly once.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for request in agent.received() {
        let text = request
            .pointer("/params/message/parts/0/text")
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        *counts.entry(text).or_default() += 1;
    }
    assert_eq!(counts.len(), 50, "{counts:?}");
    assert!(
        counts.values().all(|&n| n == 1),
        "a run fired twice: {counts:?}"
    );
    for id in ids {
        assert_eq!(schedules.history(ws, id, 20).await.unwrap().len(), 1);
    }
    drop((a, b));
}
