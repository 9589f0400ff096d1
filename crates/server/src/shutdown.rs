//! Serving until SIGTERM or Ctrl-C, then draining in-flight requests within a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::supervisor::Supervisor;

/// Serves `app` on `listener` (with each connection's peer address as `ConnectInfo`) until a
/// shutdown signal; then tells `supervisor`'s loops to stop, stops accepting, lets in-flight
/// requests finish for at most `deadline`, and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    deadline: Duration,
    supervisor: &Supervisor,
) -> anyhow::Result<()> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let supervisor = supervisor.clone();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received: draining requests");
        supervisor.shutdown();
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

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
