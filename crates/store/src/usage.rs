//! Token usage per workspace and UTC day (`workspace_token_usage`), added to by the A2A
//! proxy's background writer.

use molecule_domain::WorkspaceId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// Usage to add to one workspace's day.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UsageDelta {
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Calls.
    pub calls: i64,
    /// Estimated cost in USD.
    pub cost_usd: f64,
}

/// One workspace's usage on one day.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DailyUsage {
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Calls.
    pub calls: i64,
    /// Estimated cost in USD.
    pub cost_usd: f64,
}

#[derive(sqlx::FromRow)]
struct Row {
    input_tokens: i64,
    output_tokens: i64,
    calls: i64,
    cost: f64,
}

/// The start (00:00 UTC) of the day `t` falls on.
pub fn day_start(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC)
        .replace_time(time::Time::MIDNIGHT)
}

/// The token usage in the database.
#[derive(Debug, Clone, Copy)]
pub struct Usage<'a> {
    db: &'a Pool,
}

impl<'a> Usage<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Adds `delta` to `ws`'s usage of the day starting at `day` (see [`day_start`]). A
    /// workspace that no longer exists is [`StoreError::NotFound`].
    pub async fn add(
        &self,
        ws: WorkspaceId,
        day: OffsetDateTime,
        delta: UsageDelta,
    ) -> Result<(), StoreError> {
        let sql = Sql::same(
            "INSERT INTO workspace_token_usage (id, workspace_id, period_start, input_tokens, \
             output_tokens, call_count, estimated_cost_usd, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS DOUBLE PRECISION), $8) \
             ON CONFLICT (workspace_id, period_start) DO UPDATE SET \
             input_tokens = workspace_token_usage.input_tokens + excluded.input_tokens, \
             output_tokens = workspace_token_usage.output_tokens + excluded.output_tokens, \
             call_count = workspace_token_usage.call_count + excluded.call_count, \
             estimated_cost_usd = workspace_token_usage.estimated_cost_usd + excluded.estimated_cost_usd, \
             updated_at = excluded.updated_at",
        );
        let calls = i32::try_from(delta.calls).unwrap_or(i32::MAX);
        db_query!(
            self.db.exec(), query, sql,
            DbUuid(Uuid::new_v4()),
            DbUuid::from(ws),
            DbTime::at(day),
            delta.input_tokens,
            delta.output_tokens,
            calls,
            delta.cost_usd,
            DbTime::now();
            execute
        )
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// `ws`'s usage of the day starting at `day` (zero when nothing was recorded).
    pub async fn of_day(
        &self,
        ws: WorkspaceId,
        day: OffsetDateTime,
    ) -> Result<DailyUsage, StoreError> {
        let sql = Sql::same(
            "SELECT input_tokens, output_tokens, CAST(call_count AS BIGINT) AS calls, \
             CAST(estimated_cost_usd AS DOUBLE PRECISION) AS cost FROM workspace_token_usage \
             WHERE workspace_id = $1 AND period_start = $2",
        );
        let row: Option<Row> = db_query!(
            self.db.exec(), query_as::<Row>, sql, DbUuid::from(ws), DbTime::at(day);
            fetch_optional
        )?;
        Ok(row.map_or_else(DailyUsage::default, |r| DailyUsage {
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            calls: r.calls,
            cost_usd: r.cost,
        }))
    }
}
