//! Two `molecule-server` processes on one PostgreSQL database share the schedules: each due
//! run fires exactly once across them, counted at a real agent.

use std::collections::HashMap;
use std::time::Duration;

use crate::binary::{self, Server};
use crate::common::agent::TestAgent;
use molecule_store::NewSchedule;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Starts the binary in dev mode on `url`, polling for due runs every second, and waits for
/// its "listening on" line.
fn start(url: &str, dir: &std::path::Path) -> Server {
    let mut cmd = binary::command(dir);
    cmd.env("DATABASE_URL", url)
        .env("MOLECULE_ENV", "development")
        .env("MOLECULE_SCHEDULER_POLL_SECONDS", "1")
        .args(["--port", "0"]);
    Server::start(cmd)
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
