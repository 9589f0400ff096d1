//! Serving until SIGTERM or Ctrl-C, then draining in-flight requests within a deadline.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until a shutdown signal; then stops accepting, lets in-flight
/// requests finish for at most `deadline`, and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    deadline: Duration,
    signals: Signals,
) -> anyhow::Result<()> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        signals.wait().await;
        tracing::info!("shutdown signal received: draining requests");
        let _ = signalled_tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result.context("the HTTP server failed"),
        _ = signalled_rx => {}
    }
    match tokio::time::timeout(deadline, server).await {
        Ok(result) => result.context("the HTTP server failed")?,
        Err(_) => tracing::warn!("requests still running after {deadline:?}: closing them"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// The shutdown signals (SIGTERM, SIGINT / Ctrl-C), handled from the moment they are
/// installed: installed before the server says it is listening, a signal sent right after
/// that line is never the default "terminate at once".
pub(crate) struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers.
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves at the first signal.
    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.term) => {}
                () = next(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
