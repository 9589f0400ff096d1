//! The real router served in this process, on its own tokio runtime (as its own process would
//! have), over a fresh database, in strict mode: an admin token is set and every agent call
//! needs its workspace's token. The A2A address policy lets agents on loopback register and be
//! called (the bench's agents run on 127.0.0.1); the per-IP limit is raised out of the way.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use molecule_server::{AppState, HttpSettings, Security, router};
use molecule_store::testing::TestStore;
use serde_json::Value;

use crate::api::{ADMIN_TOKEN, Agent, Api};
use crate::knobs::Database;
use crate::procs::{Killed, READY_DEADLINE, free_port, start_echo_agent};

/// A server running in this process; stopped, with its database, when dropped (outside any
/// runtime).
pub struct InProcess {
    /// A client of it.
    pub api: Api,
    /// Its state (the bench reads the store only to check what it measured).
    pub state: AppState,
    db: Option<TestStore>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl InProcess {
    /// Starts the server on a fresh database of `database`; its client keeps up to
    /// `connections` idle connections.
    pub fn start(database: Database, connections: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("server")
            .build()?;
        let (db, state, base) = runtime.block_on(async {
            let db = TestStore::of(database.backend()).await;
            let state = AppState::with_backend(
                (*db).clone(),
                Security::strict(ADMIN_TOKEN.to_owned(), false),
                None,
                "http://127.0.0.1".into(),
            )
            .with_http(HttpSettings {
                rate_limit: u32::MAX,
                ..HttpSettings::default()
            })
            .with_a2a_settings(molecule_a2a::Settings {
                policy: molecule_a2a::ssrf::UrlPolicy {
                    dev_mode: true,
                    saas: false,
                },
                ..molecule_a2a::Settings::default()
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            tokio::spawn(molecule_server::http_server::serve(
                listener,
                router(state.clone()),
                molecule_server::http_server::ServerSettings::default(),
                std::future::pending(),
                Duration::ZERO,
            ));
            anyhow::Ok((db, state, base))
        })?;
        Ok(InProcess {
            api: Api::new(&base, connections)?,
            state,
            db: Some(db),
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the server's runtime (where its database pool lives) and answers its
    /// result.
    pub async fn on_server<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let runtime = self.runtime.as_ref().context("the server has stopped")?;
        Ok(runtime.spawn(work).await?)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // The pool closes on the runtime it was opened on.
            let db = self.db.take();
            runtime.block_on(async move { drop(db) });
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// The echo agent binary serving a new external workspace `name` (under `parent`), registered
/// by itself with the server and online: the workspace, the process and the agent's URL.
pub async fn echo_agent(
    api: &Api,
    bin: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    parent: Option<&str>,
) -> anyhow::Result<(Agent, Killed, String)> {
    let agent = api.create_external(name, parent).await?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let mut process = start_echo_agent(bin, dir, port, &api.base, &agent.id, &agent.token)?;
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(reply) = api
            .http
            .get(format!("{}/workspaces/{}", api.base, agent.id))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            && let Ok(body) = reply.json::<Value>().await
            && body["url"] == url
            && body["status"] == "online"
        {
            return Ok((agent, process, url));
        }
        process.check_running("the echo agent")?;
        if Instant::now() > deadline {
            bail!("the echo agent did not register within {READY_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
