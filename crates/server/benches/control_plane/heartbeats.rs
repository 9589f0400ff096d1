//! Heartbeats ingested per second from many simulated agents: `BENCH_AGENTS` external
//! workspaces created and registered through the API (each at its own loopback URL,
//! [`agent_url`], never called), then `BENCH_HEARTBEAT_CLIENTS` concurrent clients each sending, one after the
//! other, the heartbeat of the next agent in turn with that agent's token: an idle agent's
//! body as the runtime sends it every 30 s (no task, no errors, its capabilities, a growing
//! uptime). Every heartbeat does its full work: token check, the row update, status
//! evaluation, capabilities, a drain check, the `WORKSPACE_HEARTBEAT` broadcast and the
//! inbound secret in the answer.

use std::sync::Arc;

use crate::Ctx;
use crate::api::{Agent, agent_url, heartbeat_body};
use crate::in_process::InProcess;
use crate::knobs::Database;
use crate::load::{Request, for_window, per_second};
use crate::report::{Row, verdict};

/// The heartbeat rate the issue asks for on PostgreSQL.
const GOAL: f64 = 20_000.0;

/// Runs the heartbeat row on `database`.
pub fn run(ctx: &Ctx, database: Database) -> anyhow::Result<Vec<Row>> {
    let knobs = &ctx.knobs;
    let timing = knobs.heartbeats;
    let server = InProcess::start(database, timing.clients.max(knobs.setup_clients) * 2)?;
    let api = server.api.clone();
    let rows = ctx.load.block_on(async {
        eprintln!(
            "{}: registering {} agents...",
            database.label(),
            knobs.agents
        );
        let started = std::time::Instant::now();
        let agents = api
            .populate("hb", knobs.agents, knobs.setup_clients, agent_url)
            .await?;
        let setup = per_second(agents.len(), started.elapsed());
        eprintln!("{}: heartbeats...", database.label());
        let agents: Arc<[Agent]> = agents.into();
        let clients = timing.clients;
        let request: Request = Arc::new(move |client, n| {
            let agent = agents[(n as usize * clients + client) % agents.len()].clone();
            let body = heartbeat_body(&agent, 0, 60 + n * 30);
            let api = api.clone();
            Box::pin(async move { api.heartbeat(&agent, &body).await })
        });
        let outcome = for_window(timing, request).await;
        let goal = match database {
            Database::Postgres => {
                format!("goal ≥ 20 000/s: {}", verdict(outcome.per_second() >= GOAL))
            }
            Database::Sqlite => "(the goal is for PostgreSQL)".to_owned(),
        };
        let name = format!("heartbeats ({} agents, {clients} clients)", knobs.agents);
        anyhow::Ok(vec![
            Row::load(name, database.label(), &outcome, "/s").goal(goal),
            Row::value(
                format!(
                    "create + register a workspace ({} clients)",
                    knobs.setup_clients
                ),
                database.label(),
                format!("{setup:.0} /s"),
            ),
        ])
    })?;
    drop(server);
    Ok(rows)
}
