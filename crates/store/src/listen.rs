//! Cross-replica notifications: PostgreSQL `LISTEN`/`NOTIFY` behind a plain API.

use sqlx::postgres::PgListener;

use crate::StoreError;

/// The longest payload `NOTIFY` accepts, in bytes (PostgreSQL: shorter than 8000).
pub const MAX_NOTIFY_BYTES: usize = 7999;

/// A dedicated connection that receives the notifications of one channel.
pub struct EventListener {
    inner: PgListener,
}

impl std::fmt::Debug for EventListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventListener").finish_non_exhaustive()
    }
}

impl EventListener {
    pub(crate) async fn connect(pool: &sqlx::PgPool, channel: &str) -> Result<Self, StoreError> {
        let mut inner = PgListener::connect_with(pool).await?;
        inner.listen(channel).await?;
        Ok(Self { inner })
    }

    /// The payload of the next notification, or `None` when the connection was lost (and
    /// notifications may have been missed). Fails with [`StoreError::is_closed`] once the
    /// store is closed.
    pub async fn next_or_lost(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self.inner.try_recv().await?.map(|n| n.payload().to_owned()))
    }

    /// The payload of the next notification. A lost connection is re-established (and the
    /// channel listened to again) on the way; notifications sent meanwhile are lost. Fails
    /// for good with [`StoreError::is_closed`] once the store is closed.
    pub async fn recv(&mut self) -> Result<String, StoreError> {
        let notification = self.inner.recv().await?;
        Ok(notification.payload().to_owned())
    }
}
