//! Serving until SIGTERM or Ctrl-C, then draining in-flight requests within a deadline.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::http_server::{self, ServerSettings};
use crate::supervisor::Supervisor;

/// Serves `app` on `listener` (see [`http_server::serve`]) until a shutdown signal; then tells
/// `supervisor`'s loops to stop, stops accepting, lets in-flight requests finish for at most
/// `deadline`, and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ServerSettings,
    signals: Signals,
    deadline: Duration,
    supervisor: &Supervisor,
) {
    let supervisor = supervisor.clone();
    let signal = async move {
        signals.wait().await;
        tracing::info!("shutdown signal received: draining requests");
        supervisor.shutdown();
    };
    http_server::serve(listener, app, settings, signal, deadline).await;
    tracing::info!("stopped");
}

/// The shutdown signals, registered up front: a SIGTERM that arrives before the server is
/// polled must still be a graceful stop, not the default kill.
pub(crate) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers now.
    pub(crate) fn install() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?,
        })
    }

    /// Completes on SIGTERM or Ctrl-C.
    async fn wait(mut self) {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            self.term.recv().await;
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
}
