//! Schedules and the scheduler over real HTTP: a real server, a real agent on loopback, both
//! databases. Time is an injected clock; the scheduler's own waits are configured short.

mod replicas;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::agent::TestAgent;
use crate::common::{ADMIN, Options, TestServer};
use molecule_domain::WorkspaceId;
use molecule_server::scheduler::{Clock, Scheduler, Settings};
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

molecule_store::on_both_backends!(
    crud_and_validation,
    next_run_follows_the_zone_across_a_dst_change,
    run_now_hands_back_the_prompt_or_fires_to_a_real_agent,
    a_busy_agent_gives_a_skipped_run,
    the_loop_fires_a_schedule_due_in_the_past_on_start,
    health_routes,
);

/// A clock the test moves.
#[derive(Debug)]
struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    fn at(t: OffsetDateTime) -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(t)))
    }

    fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// Short capacity waits, so a busy agent is skipped in milliseconds.
fn quick() -> Settings {
    Settings {
        capacity_polls: 2,
        capacity_poll_every: Duration::from_millis(10),
        ..Settings::default()
    }
}

async fn server(db: TestStore, dev: bool, clock: Arc<TestClock>) -> TestServer {
    TestServer::start_configured(db, Options { backend: true, dev }, move |state| {
        let scheduler = Scheduler::new(
            state.store.clone(),
            state.a2a.clone(),
            state.events.clone(),
            quick(),
            clock,
        );
        state.with_scheduler(scheduler)
    })
    .await
}

/// An external workspace registered at `url` (dev mode), with its token.
async fn registered(s: &TestServer, name: &str, url: &str) -> (WorkspaceId, String) {
    let body = json!({ "name": name, "runtime": "external" });
    let (status, reply) = s.call("POST", "/workspaces", None, Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    let id: WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
    let token = reply["connection"]["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body =
        json!({ "id": id, "url": url, "agent_card": {"name": name}, "delivery_mode": "push" });
    let (status, reply) = s
        .call("POST", "/registry/register", Some(&token), Some(body))
        .await;
    assert_eq!(status, 200, "{reply}");
    (id, token)
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

async fn create(s: &TestServer, ws: WorkspaceId, token: Option<&str>, body: Value) -> Value {
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{ws}/schedules"),
            token,
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    reply
}

async fn crud_and_validation(db: TestStore) {
    let clock = TestClock::at(datetime!(2026-01-05 10:00:30 UTC));
    let s = server(db, false, clock).await;
    let ws = s.create(json!({"name": "ws"})).await;
    let other = s.create(json!({"name": "other"})).await;
    let path = format!("/workspaces/{ws}/schedules");
    let admin = Some(ADMIN);
    for (body, message) in [
        (json!({"prompt": "p"}), "cron_expr and prompt are required"),
        (
            json!({"cron_expr": "* * * * *", "prompt": ""}),
            "cron_expr and prompt are required",
        ),
        (
            json!({"cron_expr": "* * * * *", "prompt": "p", "timezone": "Mars/Olympus"}),
            "invalid timezone: Mars/Olympus",
        ),
        (
            json!({"cron_expr": "not a cron", "prompt": "p"}),
            "invalid request body",
        ),
        (
            json!({"cron_expr": "0 * * * * *", "prompt": "p"}),
            "invalid request body",
        ),
        (
            json!({"cron_expr": "0 0 * * 7", "prompt": "p"}),
            "invalid request body",
        ),
        (
            json!({"cron_expr": "0 0 30 2 *", "prompt": "p"}),
            "invalid request body",
        ),
    ] {
        let (status, reply) = s.call("POST", &path, admin, Some(body.clone())).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(message)),
            "{body}"
        );
    }
    let (status, reply) = s.call("GET", &path, admin, None).await;
    assert_eq!((status, reply), (200, json!([])), "nothing was written");

    let created = create(
        &s,
        ws,
        admin,
        json!({"name": "every 15", "cron_expr": "*/15 * * * *", "prompt": "line one\r\nline two"}),
    )
    .await;
    assert_eq!(created["status"], "created");
    assert_eq!(
        time_of(&created["next_run_at"]),
        datetime!(2026-01-05 10:15:00 UTC)
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, list) = s.call("GET", &path, admin, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let row = &list[0];
    assert_eq!(row["prompt"], "line one\nline two", "CR removed");
    assert_eq!(
        (row["timezone"].as_str(), row["enabled"].as_bool()),
        (Some("UTC"), Some(true))
    );
    assert_eq!(
        (row["source"].as_str(), row["run_count"].as_i64()),
        (Some("runtime"), Some(0))
    );
    assert_eq!(
        (row["last_status"].as_str(), &row["last_run_at"]),
        (Some(""), &Value::Null)
    );
    assert!(row.get("consecutive_empty_runs").is_none());

    // A duplicate name is a conflict, not a 500.
    let dup = json!({"name": "every 15", "cron_expr": "0 * * * *", "prompt": "p"});
    let (status, _) = s.call("POST", &path, admin, Some(dup)).await;
    assert_eq!(status, 409);

    // PATCH: a bad expression or zone changes nothing.
    let one = format!("{path}/{id}");
    let (status, reply) = s
        .call("PATCH", &one, admin, Some(json!({"cron_expr": "nope"})))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid request body"))
    );
    let (status, reply) = s
        .call(
            "PATCH",
            &one,
            admin,
            Some(json!({"timezone": "Nowhere/Town"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid timezone: Nowhere/Town"))
    );
    let (_, list) = s.call("GET", &path, admin, None).await;
    assert_eq!(list[0]["cron_expr"], "*/15 * * * *");
    assert_eq!(list[0]["updated_at"], row["updated_at"]);
    // A good change recomputes the next run in the new zone.
    let change = json!({"cron_expr": "0 9 * * *", "timezone": "Europe/Paris", "name": null});
    let (status, reply) = s.call("PATCH", &one, admin, Some(change)).await;
    assert_eq!((status, reply), (200, json!({"status": "updated"})));
    let (_, list) = s.call("GET", &path, admin, None).await;
    assert_eq!(list[0]["name"], "every 15", "null keeps the value");
    assert_eq!(
        time_of(&list[0]["next_run_at"]),
        datetime!(2026-01-06 08:00:00 UTC)
    );

    // Another workspace's path never reaches it, even with that workspace's own token.
    // The token the workspace's start carried (issuing one here would race with it).
    let other_token = s.backend().token_of(other).await;
    let foreign = format!("/workspaces/{other}/schedules/{id}");
    for (method, p, body) in [
        ("PATCH", foreign.clone(), Some(json!({"prompt": "hijack"}))),
        ("DELETE", foreign.clone(), None),
        ("POST", format!("{foreign}/run"), None),
    ] {
        let (status, reply) = s.call(method, &p, Some(&other_token), body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (404, Some("schedule not found")),
            "{method} {p}"
        );
    }
    let (status, reply) = s
        .call(
            "GET",
            &format!("{foreign}/history"),
            Some(&other_token),
            None,
        )
        .await;
    assert_eq!((status, reply), (200, json!([])));
    // Nor does the other workspace's token on this workspace's path.
    let (status, _) = s.call("GET", &path, Some(&other_token), None).await;
    assert_eq!(status, 401);
    let (_, list) = s.call("GET", &path, admin, None).await;
    assert_eq!(list[0]["prompt"], "line one\nline two");

    // The workspace's own token works; delete, then 404.
    let own = s.backend().token_of(ws).await;
    let (status, reply) = s.call("DELETE", &one, Some(&own), None).await;
    assert_eq!((status, reply), (200, json!({"status": "deleted"})));
    let (status, reply) = s.call("DELETE", &one, admin, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("schedule not found"))
    );
    let (status, _) = s
        .call(
            "PATCH",
            &format!("{path}/not-a-uuid"),
            admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);
}

async fn next_run_follows_the_zone_across_a_dst_change(db: TestStore) {
    // New York, 2026-03-08 01:00 EST: at 02:00 the clock jumps to 03:00 EDT.
    let clock = TestClock::at(datetime!(2026-03-08 06:00:00 UTC));
    let s = server(db, false, clock.clone()).await;
    let ws = s.create(json!({"name": "ws"})).await;
    let body = json!({"name": "gap", "cron_expr": "30 2 * * *", "timezone": "America/New_York", "prompt": "p"});
    let gap = create(&s, ws, Some(ADMIN), body).await;
    // 02:30 does not exist that night: it runs when the gap ends, 03:00 EDT.
    assert_eq!(
        time_of(&gap["next_run_at"]),
        datetime!(2026-03-08 07:00:00 UTC)
    );
    let body = json!({"name": "nine", "cron_expr": "0 9 * * *", "timezone": "America/New_York", "prompt": "p"});
    let nine = create(&s, ws, Some(ADMIN), body).await;
    // 09:00 EDT is 13:00 UTC (it was 14:00 UTC the day before).
    assert_eq!(
        time_of(&nine["next_run_at"]),
        datetime!(2026-03-08 13:00:00 UTC)
    );
    // Fall back, 2026-11-01: 01:30 happens twice; a daily 01:30 runs at the first one.
    clock.set(datetime!(2026-11-01 04:00:00 UTC));
    let body = json!({"name": "overlap", "cron_expr": "30 1 * * *", "timezone": "America/New_York", "prompt": "p"});
    let overlap = create(&s, ws, Some(ADMIN), body).await;
    assert_eq!(
        time_of(&overlap["next_run_at"]),
        datetime!(2026-11-01 05:30:00 UTC)
    );
}

async fn run_now_hands_back_the_prompt_or_fires_to_a_real_agent(db: TestStore) {
    let clock = TestClock::at(OffsetDateTime::now_utc());
    let s = server(db, true, clock).await;
    let agent = TestAgent::start().await;
    let (ws, token) = registered(&s, "worker", &agent.url).await;
    let body = json!({"name": "report", "cron_expr": "0 0 1 1 *", "prompt": "write the report"});
    let id = create(&s, ws, Some(&token), body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = format!("/workspaces/{ws}/schedules/{id}/run");
    // The canvas contract: the prompt comes back, nothing is sent or changed.
    let (status, reply) = s.call("POST", &run, Some(&token), None).await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"status": "fired", "workspace_id": ws, "prompt": "write the report"})
        )
    );
    assert!(agent.received().is_empty());
    // A server-side fire delivers it to the agent and records the run.
    let (status, reply) = s
        .call("POST", &format!("{run}?fire=true"), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (reply["run_status"].as_str(), reply["run_error"].as_str()),
        (Some("ok"), Some(""))
    );
    let received = agent.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].pointer("/params/message/parts/0/text"),
        Some(&json!("write the report"))
    );
    let message_id = received[0]
        .pointer("/params/message/messageId")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        message_id.starts_with(&format!("cron-{}-", &id.replace('-', "")[..8])),
        "{message_id}"
    );
    let (_, history) = s
        .call(
            "GET",
            &format!("/workspaces/{ws}/schedules/{id}/history"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(
        (
            history[0]["status"].as_str(),
            history[0]["error_detail"].as_str()
        ),
        (Some("ok"), Some(""))
    );
    assert_eq!(history[0]["duration_ms"], Value::Null);
    assert_eq!(history[0]["request"]["schedule_id"], json!(id));
    assert_eq!(history[0]["request"]["prompt"], "write the report");
    let (_, list) = s
        .call(
            "GET",
            &format!("/workspaces/{ws}/schedules"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (
            list[0]["run_count"].as_i64(),
            list[0]["last_status"].as_str()
        ),
        (Some(1), Some("ok"))
    );
}

async fn a_busy_agent_gives_a_skipped_run(db: TestStore) {
    let clock = TestClock::at(datetime!(2026-01-05 10:00:30 UTC));
    let s = server(db, true, clock.clone()).await;
    let agent = TestAgent::start().await;
    let (ws, token) = registered(&s, "busy", &agent.url).await;
    let (status, _) = s
        .call(
            "POST",
            "/registry/heartbeat",
            Some(&token),
            Some(json!({"workspace_id": ws, "active_tasks": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let body = json!({"name": "hourly", "cron_expr": "0 * * * *", "prompt": "check in"});
    let id = create(&s, ws, Some(&token), body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = s.state.events.subscribe();
    clock.set(datetime!(2026-01-05 11:00:05 UTC));
    let outcomes = s.state.scheduler.tick_and_wait().await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].status, "skipped");
    assert!(
        agent.received().is_empty(),
        "nothing was sent to a busy agent"
    );
    let (_, history) = s
        .call(
            "GET",
            &format!("/workspaces/{ws}/schedules/{id}/history"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history[0]["status"], "skipped");
    assert_eq!(
        history[0]["error_detail"],
        "skipped: workspace busy (active_tasks=1)"
    );
    assert_eq!(history[0]["request"]["skipped"], true);
    let (_, list) = s
        .call(
            "GET",
            &format!("/workspaces/{ws}/schedules"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (
            list[0]["run_count"].as_i64(),
            list[0]["last_status"].as_str()
        ),
        (Some(1), Some("skipped"))
    );
    assert_eq!(
        time_of(&list[0]["next_run_at"]),
        datetime!(2026-01-05 12:00:00 UTC)
    );
    let skipped = loop {
        let e = events.recv().await.unwrap();
        if e.event == "CRON_SKIPPED" {
            break e;
        }
    };
    assert_eq!(skipped.payload["schedule_id"], json!(id));
    // Not due again until the next slot.
    assert!(s.state.scheduler.tick_and_wait().await.is_empty());
}

async fn the_loop_fires_a_schedule_due_in_the_past_on_start(db: TestStore) {
    let clock = TestClock::at(datetime!(2026-01-05 10:00:30 UTC));
    let s = server(db, true, clock.clone()).await;
    let agent = TestAgent::start().await;
    let (ws, token) = registered(&s, "worker", &agent.url).await;
    let body = json!({"name": "daily", "cron_expr": "0 6 * * *", "prompt": "good morning"});
    let id = create(&s, ws, Some(&token), body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The server was down over the run: started the next day, the missed run fires at once.
    clock.set(datetime!(2026-01-06 08:00:00 UTC));
    s.state.scheduler.spawn(&s.state.supervisor);
    agent.wait_for(1).await;
    assert_eq!(
        agent.received()[0].pointer("/params/message/parts/0/text"),
        Some(&json!("good morning"))
    );
    let path = format!("/workspaces/{ws}/schedules");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let row = loop {
        let (_, list) = s.call("GET", &path, Some(&token), None).await;
        if list[0]["run_count"] == 1 {
            break list[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run was not recorded: {list}"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(row["last_status"], "ok");
    assert_eq!(
        time_of(&row["next_run_at"]),
        datetime!(2026-01-07 06:00:00 UTC)
    );
    assert_eq!(row["id"], json!(id));
    let (status, liveness) = s.call("GET", "/admin/liveness", None, None).await;
    assert_eq!(status, 200);
    assert!(
        liveness["subsystems"].get("scheduler").is_some(),
        "{liveness}"
    );
    s.state.supervisor.shutdown();
}

async fn health_routes(db: TestStore) {
    let clock = TestClock::at(datetime!(2026-01-05 10:00:30 UTC));
    let s = server(db, false, clock).await;
    let lead = s.create(json!({"name": "lead"})).await;
    let peer = s.create(json!({"name": "peer", "parent_id": lead})).await;
    // Not a peer: a child of another root (root workspaces are siblings of each other).
    let elsewhere = s.create(json!({"name": "elsewhere"})).await;
    let stranger = s
        .create(json!({"name": "stranger", "parent_id": elsewhere}))
        .await;
    let backend = s.backend();
    let (lead_t, peer_t, stranger_t) = (
        backend.token_of(lead).await,
        backend.token_of(peer).await,
        backend.token_of(stranger).await,
    );
    let body = json!({"name": "daily", "cron_expr": "0 6 * * *", "prompt": "secret prompt"});
    create(&s, lead, Some(ADMIN), body).await;
    let health = format!("{}/workspaces/{lead}/schedules/health", s.base);
    let get = async |caller: Option<WorkspaceId>, token: Option<&str>| {
        let mut req = s.http.get(&health);
        if let Some(c) = caller {
            req = req.header("X-Workspace-ID", c.to_string());
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let (status, reply) = get(None, Some(&lead_t)).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("X-Workspace-ID header required"))
    );
    // A self-call needs the workspace's own token (defect 4).
    let (status, _) = get(Some(lead), None).await;
    assert_eq!(status, 401);
    let (status, _) = get(Some(lead), Some(&stranger_t)).await;
    assert_eq!(status, 401);
    let (status, reply) = get(Some(lead), Some(&lead_t)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply[0]["name"], "daily");
    for hidden in ["prompt", "cron_expr", "timezone"] {
        assert!(reply[0].get(hidden).is_none(), "{hidden} exposed");
    }
    // A peer may look; a stranger may not.
    let (status, _) = get(Some(peer), Some(&peer_t)).await;
    assert_eq!(status, 200);
    let (status, reply) = get(Some(stranger), Some(&stranger_t)).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (403, Some("access denied"))
    );

    let (status, reply) = s.call("GET", "/admin/schedules/health", None, None).await;
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = s
        .call("GET", "/admin/schedules/health", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply.as_array().unwrap().len(), 1, "{reply}");
    assert_eq!(reply[0]["workspace_name"], "lead");
    assert_eq!(reply[0]["status"], "never_run");
    assert_eq!(reply[0]["stale_threshold_seconds"], 172_800);
}
