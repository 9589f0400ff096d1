//! The A2A queue: enqueue and drain messages per second. A team with a caller workspace and a
//! target whose agent (the echo agent's address, registered by the bench) reported in its
//! heartbeat that it has no free task slot (`active_tasks` = `max_concurrent_tasks` = 1):
//!
//! 1. **enqueue**: `BENCH_CLIENTS` concurrent clients send `BENCH_QUEUE_MESSAGES`
//!    `message/send` to the target as the caller (its id and token); each must be answered
//!    202 with a `queue_id`. Then one last message, alone, so that it is the newest.
//! 2. **drain**: a heartbeat reporting a free slot starts the drain, which delivers the
//!    queued messages one after the other (oldest first) to the agent; it is done when the
//!    last message's status (`GET …/a2a/queue/:queue_id` as the caller) is `completed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::Ctx;
use crate::api::{Agent, Api, heartbeat_body, message};
use crate::in_process::{InProcess, echo_agent};
use crate::knobs::Database;
use crate::load::{Request, for_count, per_second};
use crate::report::{Row, verdict};

/// The enqueue + drain rate the issue asks for.
const GOAL: f64 = 5_000.0;

/// The longest the drain may take per message before the bench gives up.
const DRAIN_PER_MESSAGE: Duration = Duration::from_millis(100);

/// Runs the queue rows on `database`.
pub fn run(ctx: &Ctx, database: Database) -> anyhow::Result<Vec<Row>> {
    let clients = ctx.knobs.a2a.clients;
    let total = ctx.knobs.queue_messages;
    let server = InProcess::start(database, clients * 2)?;
    let api = server.api.clone();
    let rows = ctx.load.block_on(async {
        let team = api.create_external("queue-team", None).await?;
        let (_, _agent, agent_url) = echo_agent(
            &api,
            ctx.echo_agent()?,
            ctx.dir(),
            "queue-echo",
            Some(&team.id),
        )
        .await?;
        let caller = api.create_external("queue-caller", Some(&team.id)).await?;
        api.register(&caller, "queue-caller", &agent_url).await?;
        let target = api.create_external("queue-target", Some(&team.id)).await?;
        api.register(&target, "queue-target", &agent_url).await?;
        if !api
            .heartbeat(&target, &heartbeat_body(&target, 1, 60))
            .await
        {
            bail!("the target's 'busy' heartbeat was refused");
        }

        eprintln!("{}: queue: enqueue {total}...", database.label());
        let url = format!("{}/workspaces/{}/a2a", api.base, target.id);
        let enqueued = for_count(clients, total, enqueue(&api, &url, &caller)).await;
        let started = Instant::now();
        let last = send(&api, &url, &caller, "queue last")
            .await
            .context("the last message was not queued")?;
        let enqueue_time = enqueued.window + started.elapsed();

        eprintln!("{}: queue: drain...", database.label());
        let started = Instant::now();
        if !api
            .heartbeat(&target, &heartbeat_body(&target, 0, 90))
            .await
        {
            bail!("the target's 'free' heartbeat was refused");
        }
        let deadline = DRAIN_PER_MESSAGE * u32::try_from(total + 1).unwrap_or(u32::MAX);
        wait_completed(&api, &target, &caller, &last, deadline).await?;
        let drain_time = started.elapsed();
        let (store, id) = (server.state.store.clone(), target.id.parse()?);
        let depth = server
            .on_server(async move { store.queue().depth(id).await })
            .await??;
        if depth != 0 {
            bail!("{depth} message(s) still queued after the last one was delivered");
        }

        let queued = enqueued.latencies.len() + 1;
        let combined = per_second(queued, enqueue_time + drain_time);
        let db = database.label();
        anyhow::Ok(vec![
            Row::load(
                format!("queue: enqueue to a full agent ({clients} clients)"),
                db,
                &enqueued,
                "/s",
            ),
            Row::value(
                "queue: drain to the agent",
                db,
                format!("{:.0} /s", per_second(queued, drain_time)),
            ),
            Row::value(
                format!("queue: enqueue + drain, {queued} messages"),
                db,
                format!("{combined:.0} /s"),
            )
            .errors(enqueued.errors)
            .goal(format!("goal ≥ 5 000/s: {}", verdict(combined >= GOAL))),
        ])
    })?;
    drop(server);
    Ok(rows)
}

/// Each request sends one message that must be queued.
fn enqueue(api: &Api, url: &str, caller: &Agent) -> Request {
    let (api, url, caller) = (api.clone(), url.to_owned(), caller.clone());
    Arc::new(move |client, n| {
        let (api, url, caller) = (api.clone(), url.clone(), caller.clone());
        Box::pin(async move {
            send(&api, &url, &caller, &format!("queue {client}-{n}"))
                .await
                .is_some()
        })
    })
}

/// Sends `message(text)` as `caller`; its `queue_id` when answered 202.
async fn send(api: &Api, url: &str, caller: &Agent, text: &str) -> Option<String> {
    let reply = api
        .http
        .post(url)
        .header("X-Workspace-ID", &caller.id)
        .bearer_auth(&caller.token)
        .json(&message(text))
        .send()
        .await
        .ok()?;
    if reply.status() != 202 {
        return None;
    }
    let body: Value = reply.json().await.ok()?;
    body["queue_id"].as_str().map(str::to_owned)
}

/// Polls the status of `queue_id` (as `caller`) until it is `completed`.
async fn wait_completed(
    api: &Api,
    target: &Agent,
    caller: &Agent,
    queue_id: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let url = format!("{}/workspaces/{}/a2a/queue/{queue_id}", api.base, target.id);
    let deadline = Instant::now() + within;
    loop {
        let reply = api
            .http
            .get(&url)
            .header("X-Workspace-ID", &caller.id)
            .bearer_auth(&caller.token)
            .send()
            .await?;
        let body: Value = reply.json().await?;
        match body["status"].as_str() {
            Some("completed") => return Ok(()),
            Some("queued" | "dispatched") => {}
            _ => bail!("the last queued message is {body}"),
        }
        if Instant::now() > deadline {
            bail!("the queue was not drained within {within:?}: the last message is {body}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
