//! The cross-replica half of the cache's coherence: a listener on [`super::CACHE_CHANNEL`]
//! (PostgreSQL) that forgets what other replicas changed, and distrusts the cache whenever it
//! may miss a notification.

use std::sync::Arc;
use std::time::Duration;

use crate::listen::EventListener;

use super::{CACHE_CHANNEL, Registry};

/// First wait before listening again after a failure; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait before listening again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Listens for invalidations until the store is closed. The cache is trusted only while
/// `LISTEN` is in effect: it starts empty each time the listener (re)connects, and is
/// distrusted (emptied, bypassed) the moment the connection is lost.
pub(crate) async fn listen(pool: sqlx::PgPool, registry: Arc<Registry>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match EventListener::connect(&pool, CACHE_CHANNEL).await {
            Ok(mut listener) => {
                registry.trust();
                backoff = MIN_BACKOFF;
                loop {
                    match listener.next_or_lost().await {
                        Ok(Some(notice)) => registry.apply_notice(&notice),
                        Ok(None) => {
                            tracing::warn!("cache listener lost its connection: cache bypassed");
                            registry.distrust();
                            break;
                        }
                        Err(e) => {
                            registry.distrust();
                            if e.is_closed() {
                                return;
                            }
                            tracing::warn!(error = %e, "cache listener failed: cache bypassed");
                            break;
                        }
                    }
                }
            }
            Err(e) if e.is_closed() => return,
            Err(e) => tracing::warn!(error = %e, "cache listener cannot listen"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
