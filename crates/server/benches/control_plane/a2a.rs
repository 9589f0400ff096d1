//! A2A `message/send` round trips per second and latency, all ending at the same echo agent
//! process:
//!
//! - **direct**: the agent on loopback, and **nginx** as a plain reverse proxy to it (measured
//!   once, on the first database's agent: neither touches a database);
//! - **proxy, canvas caller**: `POST /workspaces/:id/a2a` with the admin token, as the canvas
//!   sends (the caller is the user);
//! - **proxy, agent caller**: the same from a sibling workspace the realistic agent-to-agent
//!   way, `X-Workspace-ID: <caller>` and `Authorization: Bearer <caller's token>`, so the
//!   token, the hierarchy and the caller's deadline are checked on every call.
//!
//! The target and the caller are children of one team workspace. Every proxied call goes
//! through the whole HTTP pipeline and writes its activity row, as in production.

use std::sync::Arc;

use crate::Ctx;
use crate::api::{ADMIN_TOKEN, Agent, Api, round_trip};
use crate::in_process::{InProcess, echo_agent};
use crate::knobs::Database;
use crate::load::{Outcome, Request, for_window};
use crate::nginx::Nginx;
use crate::procs::{free_port, wait_for_health};
use crate::report::{Row, millis, verdict};

/// The baseline rows, kept for the ratios of every database's proxy rows.
#[derive(Debug, Default)]
pub struct Baseline {
    direct: Option<Outcome>,
    nginx: Option<Outcome>,
}

/// Runs the A2A rows on `database` (and the baseline rows, the first time).
pub fn run(ctx: &Ctx, database: Database, baseline: &mut Baseline) -> anyhow::Result<Vec<Row>> {
    let timing = ctx.knobs.a2a;
    let server = InProcess::start(database, timing.clients * 2)?;
    let api = &server.api;
    let rows = ctx.load.block_on(async {
        let team = api.create_external("bench-team", None).await?;
        let (target, _agent, agent_url) = echo_agent(
            api,
            ctx.echo_agent()?,
            ctx.dir(),
            "bench-echo",
            Some(&team.id),
        )
        .await?;
        let caller = api.create_external("bench-caller", Some(&team.id)).await?;
        api.register(&caller, "bench-caller", &agent_url).await?;

        let mut rows = Vec::new();
        if baseline.direct.is_none() {
            let nginx_port = free_port()?;
            let agent_port = agent_url
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_default();
            let _nginx = Nginx::start(ctx.nginx()?, ctx.dir(), nginx_port, agent_port)?;
            let nginx_url = format!("http://127.0.0.1:{nginx_port}/");
            wait_for_health(&api.http, &format!("{nginx_url}health")).await?;
            eprintln!("a2a: direct and nginx...");
            let direct = for_window(timing, plain(api, "direct", format!("{agent_url}/"))).await;
            let nginx = for_window(timing, plain(api, "nginx", nginx_url)).await;
            rows.push(Row::load("A2A direct (echo agent)", "–", &direct, "req/s"));
            rows.push(Row::load("A2A nginx → agent", "–", &nginx, "req/s"));
            baseline.direct = Some(direct);
            baseline.nginx = Some(nginx);
        }
        let url = format!("{}/workspaces/{}/a2a", api.base, target.id);
        eprintln!("{}: a2a proxy...", database.label());
        let canvas = for_window(timing, as_canvas(api, url.clone())).await;
        let agent = for_window(timing, as_agent(api, url, caller)).await;
        for (name, outcome) in [
            ("A2A proxy, canvas caller (admin token)", canvas),
            ("A2A proxy, agent caller (sibling's token)", agent),
        ] {
            let goal = goal(baseline, &outcome);
            rows.push(Row::load(name, database.label(), &outcome, "req/s").goal(goal));
        }
        anyhow::Ok(rows)
    })?;
    drop(server);
    Ok(rows)
}

/// "0.06× nginx, p50 +10.52 ms over direct (goal ≥ 0.8×, ≤ +1 ms): MISSED".
fn goal(baseline: &Baseline, proxy: &Outcome) -> String {
    let (Some(direct), Some(nginx)) = (&baseline.direct, &baseline.nginx) else {
        return String::new();
    };
    let ratio = if nginx.per_second() > 0.0 {
        proxy.per_second() / nginx.per_second()
    } else {
        f64::NAN
    };
    let added = proxy
        .percentile(50.0)
        .saturating_sub(direct.percentile(50.0));
    let met = ratio >= 0.8 && added.as_secs_f64() <= 0.001;
    format!(
        "{ratio:.2}× nginx, p50 +{} over direct (goal ≥ 0.8×, ≤ +1 ms): {}",
        millis(added),
        verdict(met)
    )
}

/// Requests to `url` without credentials (the agent itself, or nginx).
fn plain(api: &Api, tag: &'static str, url: String) -> Request {
    let http = api.http.clone();
    Arc::new(move |client, n| {
        let request = http.post(&url);
        Box::pin(async move { round_trip(request, &format!("{tag} {client}-{n}")).await })
    })
}

/// Requests to the proxy with the admin token (the canvas, acting for the user).
fn as_canvas(api: &Api, url: String) -> Request {
    let http = api.http.clone();
    Arc::new(move |client, n| {
        let request = http.post(&url).bearer_auth(ADMIN_TOKEN);
        Box::pin(async move { round_trip(request, &format!("canvas {client}-{n}")).await })
    })
}

/// Requests to the proxy from the workspace `caller`, with its id and token.
fn as_agent(api: &Api, url: String, caller: Agent) -> Request {
    let http = api.http.clone();
    Arc::new(move |client, n| {
        let request = http
            .post(&url)
            .header("X-Workspace-ID", &caller.id)
            .bearer_auth(&caller.token);
        Box::pin(async move { round_trip(request, &format!("agent {client}-{n}")).await })
    })
}
