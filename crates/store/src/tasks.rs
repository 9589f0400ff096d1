//! The store's own background tasks (the group-commit writer, the cache listener): each is
//! started again after a panic, and all of them stop when the store is closed.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::{AbortHandle, JoinHandle};

/// Wait before a task that panicked starts again.
const RESTART_AFTER: Duration = Duration::from_millis(500);

/// The running tasks of one store.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// Aborts the inner run of a supervised task when the supervisor itself is aborted.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Tasks {
    /// Runs `make()` now and again after each panic; a clean return is final.
    pub(crate) fn spawn<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(async move {
            loop {
                let run = tokio::spawn(make());
                let _guard = AbortOnDrop(run.abort_handle());
                match run.await {
                    Err(e) if e.is_panic() => {
                        tracing::error!(task = name, "store task panicked; restarting");
                        tokio::time::sleep(RESTART_AFTER).await;
                    }
                    _ => return,
                }
            }
        });
        self.handles.lock().push(handle);
    }

    /// Stops every task and waits until they are gone.
    pub(crate) async fn stop(&self) {
        let handles: Vec<JoinHandle<()>> = self.handles.lock().drain(..).collect();
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
    }
}
