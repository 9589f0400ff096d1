//! The molecule-rs control plane: configuration, HTTP routes and the server's run loop.
//!
//! [`run`] opens the store, binds the listener and serves [`app::router`] until SIGTERM or
//! Ctrl-C, then drains in-flight requests. ARCHITECTURE.md (at the top of the repository)
//! maps the modules.

mod a2a_platform;
mod activity_log;
pub mod app;
pub mod auth;
mod backend;
mod background;
pub mod canvas_proxy;
pub mod catalog;
pub mod channels;
pub mod config;
pub(crate) mod error;
pub mod events;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod github_app;
pub mod healthcheck;
pub mod http_server;
pub(crate) mod lifecycle;
pub mod logging;
pub(crate) mod metrics;
pub mod middleware;
pub mod observability;
pub mod openapi;
pub mod org;
pub mod plugins;
mod routes;
pub mod scheduler;
mod secret_key;
pub mod security;
mod shutdown;
pub mod state;
pub(crate) mod supervisor;
pub mod telemetry;
pub(crate) mod templates;

pub use app::{Guard, ROUTES, Route, router};
pub use middleware::HttpSettings;
pub use security::Security;
pub use state::AppState;

use std::net::SocketAddr;

use anyhow::Context;
use molecule_store::{DatabaseUrl, Store};
use tokio::net::TcpListener;

use crate::config::Config;

/// How long start-up waits for the listener of other replicas' events.
pub const REPLICA_LISTEN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long background loops may take to stop after a shutdown signal.
pub const LOOPS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the server until a shutdown signal, with everything set up from `config`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // A missing (production) or malformed secrets key refuses to start before anything else.
    if config.production()
        && config
            .secrets_encryption_key
            .as_deref()
            .is_none_or(|k| k.trim().is_empty())
    {
        return Err(secret_key::SecretKeyError::Missing.into());
    }
    molecule_store::prepare_data_dir(&config.data_dir)?;
    let secrets_key = secret_key::load(&config)?;
    let security = Security::from_config(&config)?;
    if security.dev_mode() {
        if config.host.is_loopback() {
            tracing::warn!("dev mode: every request is trusted (MOLECULE_ENV=development)");
        } else {
            tracing::warn!(
                host = %config.host,
                "DEV MODE ON A NON-LOOPBACK ADDRESS: anyone who can reach this port is admin"
            );
        }
    }
    let url = DatabaseUrl::resolve(config.database_url.as_deref(), &config.data_dir)
        .context("cannot open the database")?;
    tracing::info!(database = %url, "opening the database");
    let store = Store::connect_with(&url, config.store_settings())
        .await
        .context("cannot open the database")?
        .with_secret_key(Some(secrets_key));
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let signals = shutdown::Signals::install()?;
    let backend = backend::choose(&config).await?;
    let agents_by_name = backend::reaches_agents_by_name(&config, backend.as_deref());
    let state = AppState::with_backend(store.clone(), security, backend, config.platform_url())
        .with_http(config.http_settings())
        .with_a2a_settings(molecule_a2a::Settings {
            docker_network_urls: agents_by_name,
            ..config.a2a_settings()
        })
        .with_scheduler_settings(config.scheduler_settings())
        .with_configs_dir(config.configs_dir())
        .with_catalog(config.catalog())
        .with_observability(config.langfuse(), config.audit_ledger_salt.clone())
        .with_channel_endpoints(config.channel_endpoints())
        .with_github_webhook_secret(config.github_webhook_secret.clone())
        .with_github_app(config.github_app())
        .with_canvas_proxy(config.canvas_proxy()?.map(std::sync::Arc::new));
    let mut replicas = state.events.start_listener();
    // On PostgreSQL, hear the other replicas before saying we serve.
    if tokio::time::timeout(REPLICA_LISTEN_DEADLINE, replicas.ready())
        .await
        .is_err()
    {
        tracing::warn!("not yet listening to other replicas' events; continuing");
    }
    tracing::info!("listening on http://{local}");
    state
        .lifecycle
        .set_provision_timeout(std::time::Duration::from_secs(
            config.provision_timeout_seconds,
        ));
    background::spawn_all(&state, &config);
    let supervisor = state.supervisor.clone();
    shutdown::serve(
        listener,
        app::router(state.clone()),
        http_server::ServerSettings::from_config(&config),
        signals,
        DRAIN_DEADLINE,
        &supervisor,
    )
    .await;
    supervisor.stop(LOOPS_DEADLINE).await;
    state.events.close_clients();
    replicas.stop().await;
    store.close().await;
    Ok(())
}
