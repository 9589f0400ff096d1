//! The control plane's HTTP API as the bench's clients use it, on the in-process server or on
//! the binary: create and register external workspaces as an operator and their agents,
//! heartbeat bodies as the agent runtime sends them, and A2A `message/send` round trips.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The admin token of every server the bench starts (strict mode).
pub const ADMIN_TOKEN: &str = "bench-admin-token";

/// An external workspace and the token its agent presents.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The workspace id.
    pub id: String,
    /// Its auth token (from the create answer's `connection.auth_token`).
    pub token: String,
}

/// A client of one server, calling as the operator (the admin token) unless told otherwise.
#[derive(Debug, Clone)]
pub struct Api {
    /// Keep-alive connections, enough for every concurrent client of the bench.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Api {
    /// A client of the server at `base` with up to `connections` idle keep-alive connections.
    pub fn new(base: &str, connections: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()?;
        Ok(Api {
            http,
            base: base.to_owned(),
        })
    }

    /// `POST /workspaces` as the operator with `runtime: external` (under `parent`).
    pub async fn create_external(&self, name: &str, parent: Option<&str>) -> anyhow::Result<Agent> {
        let mut body = json!({"name": name, "runtime": "external"});
        if let Some(p) = parent {
            body["parent_id"] = json!(p);
        }
        let reply = self
            .http
            .post(format!("{}/workspaces", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await?;
        let status = reply.status();
        let body: Value = reply.json().await?;
        if status != 201 {
            bail!("POST /workspaces answered {status}: {body}");
        }
        Ok(Agent {
            id: body["id"].as_str().context("no workspace id")?.to_owned(),
            token: body["connection"]["auth_token"]
                .as_str()
                .context("no connection.auth_token")?
                .to_owned(),
        })
    }

    /// `POST /registry/register` as the agent (its token), push mode at `url`.
    pub async fn register(&self, agent: &Agent, name: &str, url: &str) -> anyhow::Result<()> {
        let body = json!({
            "id": agent.id,
            "url": url,
            "agent_card": {"name": name, "description": "bench agent", "skills": []},
            "delivery_mode": "push",
        });
        let reply = self
            .http
            .post(format!("{}/registry/register", self.base))
            .bearer_auth(&agent.token)
            .json(&body)
            .send()
            .await?;
        let status = reply.status();
        if status != 200 {
            bail!("register answered {status}: {}", reply.text().await?);
        }
        Ok(())
    }

    /// `POST /registry/heartbeat` as the agent; true when answered 200 `{"status":"ok"}`.
    pub async fn heartbeat(&self, agent: &Agent, body: &Value) -> bool {
        let Ok(reply) = self
            .http
            .post(format!("{}/registry/heartbeat", self.base))
            .bearer_auth(&agent.token)
            .json(body)
            .send()
            .await
        else {
            return false;
        };
        if reply.status() != 200 {
            return false;
        }
        reply
            .json::<Value>()
            .await
            .is_ok_and(|v| v["status"] == "ok")
    }

    /// `count` external workspaces named `<prefix>-<i>` created and registered (at
    /// `url_of(i)`) by `clients` concurrent clients; in order of `i`.
    pub async fn populate(
        &self,
        prefix: &str,
        count: usize,
        clients: usize,
        url_of: fn(usize) -> String,
    ) -> anyhow::Result<Vec<Agent>> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients.max(1) {
            let (api, next, prefix) = (self.clone(), Arc::clone(&next), prefix.to_owned());
            tasks.push(tokio::spawn(async move {
                let mut made = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return anyhow::Ok(made);
                    }
                    let name = format!("{prefix}-{i}");
                    let agent = api.create_external(&name, None).await?;
                    api.register(&agent, &name, &url_of(i)).await?;
                    made.push((i, agent));
                }
            }));
        }
        let mut all = Vec::with_capacity(count);
        for task in tasks {
            all.extend(task.await??);
        }
        all.sort_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, agent)| agent).collect())
    }
}

/// The URL simulated agent `i` registers: its own, on loopback (the discard port, where
/// nothing answers: these agents are never called).
pub fn agent_url(i: usize) -> String {
    format!("http://127.0.0.1:9/agents/{i}")
}

/// A heartbeat as the Python runtime sends it every 30 s: an idle agent (no task, no errors)
/// with its uptime and declared capabilities.
pub fn heartbeat_body(agent: &Agent, active_tasks: u32, uptime_seconds: u64) -> Value {
    json!({
        "workspace_id": agent.id,
        "error_rate": 0.0,
        "sample_error": "",
        "active_tasks": active_tasks,
        "current_task": "",
        "uptime_seconds": uptime_seconds,
        "runtime_metadata": {
            "capabilities": {"heartbeat": true, "retry": true, "activity_decoration": true},
            "idle_timeout_seconds": 300,
        },
    })
}

/// A JSON-RPC `message/send` with one text part; `text` is also its id and `messageId`.
pub fn message(text: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": text,
        "method": "message/send",
        "params": {"message": {
            "role": "user",
            "messageId": text,
            "parts": [{"kind": "text", "text": text}],
        }},
    })
}

/// Sends `message(text)`; true when the answer is 200 and echoes `text`.
pub async fn round_trip(request: reqwest::RequestBuilder, text: &str) -> bool {
    let Ok(reply) = request.json(&message(text)).send().await else {
        return false;
    };
    if reply.status() != 200 {
        return false;
    }
    let Ok(answer) = reply.json::<Value>().await else {
        return false;
    };
    answer
        .pointer("/result/parts/0/text")
        .and_then(Value::as_str)
        == Some(text)
}
