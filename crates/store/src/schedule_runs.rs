//! Firing schedules safely with several replicas: claims with a lease and a fencing token,
//! takeover of expired leases, and the recording of a run's outcome (see `schedules`).

use molecule_domain::WorkspaceId;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;
use crate::db::Sql;
use crate::schedules::{COLUMNS, Row, Schedule, Schedules};
use crate::types::{DbTime, DbUuid};

/// A due run handed to one caller by [`Schedules::claim_due`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The schedule as it was claimed (`next_run_at` already advanced).
    pub schedule: Schedule,
    /// The fencing token: only its holder may record the outcome.
    pub token: Uuid,
    /// The run time being fired.
    pub slot: OffsetDateTime,
    /// Whether a previous holder (whose lease expired) had already sent the message.
    pub sent_before: bool,
}

/// How a claimed run ended, for [`Schedules::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `ok`, `error` or `skipped` (`stale` is derived here from the empty-reply counter).
    pub status: String,
    /// The error, `""` when none.
    pub error: String,
    /// For an ok run: whether the reply was empty (counts towards `stale`).
    pub empty_reply: bool,
    /// The history row's summary.
    pub summary: String,
    /// The history row's `request_body`.
    pub request: Value,
}

/// Empty ok replies in a row that make a schedule `stale`.
pub const STALE_AFTER_EMPTY_RUNS: i32 = 3;

#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    row: Row,
    claim_token: Option<DbUuid>,
    claim_slot: Option<DbTime>,
    claim_sent: bool,
}

impl Schedules<'_> {
    /// Claims up to `limit` due runs for one caller: enabled schedules whose `next_run_at` is
    /// at or before `now` and that nobody holds, plus runs whose holder's lease has expired.
    /// A fresh claim advances `next_run_at` to `next(schedule)` in the same transaction; every
    /// claim holds the row until `now + lease`. No two callers ever get the same run.
    pub async fn claim_due(
        &self,
        now: OffsetDateTime,
        limit: i64,
        lease: time::Duration,
        next: impl Fn(&Schedule) -> OffsetDateTime,
    ) -> Result<Vec<Claim>, StoreError> {
        let select = Sql::built(
            format!(
                "SELECT {COLUMNS}, claim_token, claim_slot, claim_sent FROM workspace_schedules \
                 WHERE enabled AND ((claim_token IS NULL AND next_run_at IS NOT NULL \
                 AND next_run_at <= $1) OR (claim_token IS NOT NULL AND claim_expires_at <= $1)) \
                 ORDER BY next_run_at ASC LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            format!(
                "SELECT {COLUMNS}, claim_token, claim_slot, claim_sent FROM workspace_schedules \
                 WHERE enabled AND ((claim_token IS NULL AND next_run_at IS NOT NULL \
                 AND next_run_at <= $1) OR (claim_token IS NOT NULL AND claim_expires_at <= $1)) \
                 ORDER BY next_run_at ASC LIMIT $2"
            ),
        );
        let update = Sql::same(
            "UPDATE workspace_schedules SET next_run_at = $2, claim_token = $3, \
             claim_expires_at = $4, claim_slot = $5, claim_sent = $6 WHERE id = $1",
        );
        let now = DbTime::at(now);
        let expires = DbTime::at(now.0 + lease);
        let mut tx = self.db.begin().await?;
        let rows: Vec<ClaimRow> =
            db_query!(tx.exec(), query_as::<ClaimRow>, select, now, limit; fetch_all)?;
        let mut claims = Vec::with_capacity(rows.len());
        for r in rows {
            let mut schedule = Schedule::from(r.row);
            let token = Uuid::new_v4();
            let taken_over = r.claim_token.is_some();
            let (slot, sent_before) = match (taken_over, r.claim_slot) {
                (true, Some(slot)) => (slot.0, r.claim_sent),
                _ => (schedule.next_run_at.unwrap_or(now.0), false),
            };
            if !taken_over {
                schedule.next_run_at = Some(DbTime::at(next(&schedule)).0);
            }
            db_query!(
                tx.exec(), query, update,
                DbUuid(schedule.id),
                schedule.next_run_at.map(DbTime::at),
                DbUuid(token),
                expires,
                DbTime::at(slot),
                sent_before;
                execute
            )?;
            claims.push(Claim {
                schedule,
                token,
                slot,
                sent_before,
            });
        }
        tx.commit().await?;
        Ok(claims)
    }

    /// Claims one schedule of the workspace now (a manual run), unless a run of it is in
    /// flight; `next_run_at` is left alone. `None`: no such schedule, or it is running.
    pub async fn claim_one(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let token = Uuid::new_v4();
        let now = DbTime::at(now);
        let sql = Sql::same(
            "UPDATE workspace_schedules SET claim_token = $3, claim_expires_at = $4, \
             claim_slot = $5, claim_sent = false WHERE id = $1 AND workspace_id = $2 \
             AND (claim_token IS NULL OR claim_expires_at <= $5)",
        );
        let n = db_query!(
            self.db.exec(), query, sql,
            DbUuid(id), DbUuid::from(ws), DbUuid(token), DbTime::at(now.0 + lease), now;
            execute
        )?;
        if n == 0 {
            return Ok(None);
        }
        Ok(self.get(ws, id).await?.map(|schedule| Claim {
            schedule,
            token,
            slot: now.0,
            sent_before: false,
        }))
    }

    /// Marks a claimed run's message as being sent; `false` when the claim was lost (the
    /// caller must not send).
    pub async fn mark_sent(&self, id: Uuid, token: Uuid) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_schedules SET claim_sent = true WHERE id = $1 AND claim_token = $2",
        );
        let n = db_query!(self.db.exec(), query, sql, DbUuid(id), DbUuid(token); execute)?;
        Ok(n > 0)
    }

    /// Gives a claim up without recording a run (the agent runs its own scheduler).
    pub async fn release(&self, id: Uuid, token: Uuid) -> Result<bool, StoreError> {
        let sql = Sql::same(
            "UPDATE workspace_schedules SET claim_token = NULL, claim_expires_at = NULL, \
             claim_slot = NULL, claim_sent = false WHERE id = $1 AND claim_token = $2",
        );
        let n = db_query!(self.db.exec(), query, sql, DbUuid(id), DbUuid(token); execute)?;
        Ok(n > 0)
    }

    /// Records a claimed run's outcome and its history row in one transaction, and releases
    /// the claim: `last_run_at`, `run_count + 1`, `last_status`/`last_error` (an ok run with
    /// an empty reply counts towards `stale`; a non-empty one resets the counter). Answers the
    /// status recorded, or `None` when the claim was lost (nothing is written).
    pub async fn finish(
        &self,
        id: Uuid,
        token: Uuid,
        now: OffsetDateTime,
        outcome: &RunOutcome,
    ) -> Result<Option<String>, StoreError> {
        let lock = Sql::split(
            "SELECT workspace_id, consecutive_empty_runs FROM workspace_schedules \
             WHERE id = $1 AND claim_token = $2 FOR UPDATE",
            "SELECT workspace_id, consecutive_empty_runs FROM workspace_schedules \
             WHERE id = $1 AND claim_token = $2",
        );
        let mut tx = self.db.begin().await?;
        let held: Option<(DbUuid, i32)> = db_query!(
            tx.exec(), query_as::<(DbUuid, i32)>, lock, DbUuid(id), DbUuid(token); fetch_optional
        )?;
        let Some((ws, empties)) = held else {
            return Ok(None);
        };
        let (mut status, mut error) = (outcome.status.clone(), outcome.error.clone());
        let empties = match status.as_str() {
            "ok" if outcome.empty_reply => empties.saturating_add(1),
            "ok" => 0,
            _ => empties,
        };
        if status == "ok" && outcome.empty_reply && empties >= STALE_AFTER_EMPTY_RUNS {
            status = "stale".into();
            error = format!(
                "empty response {empties} consecutive times — agent may be phantom-producing (#795)"
            );
        }
        let now = DbTime::at(now);
        let update = Sql::same(
            "UPDATE workspace_schedules SET last_run_at = $2, run_count = run_count + 1, \
             last_status = $3, last_error = $4, consecutive_empty_runs = $5, updated_at = $2, \
             claim_token = NULL, claim_expires_at = NULL, claim_slot = NULL, claim_sent = false \
             WHERE id = $1",
        );
        db_query!(
            tx.exec(), query, update, DbUuid(id), now, status.clone(), error.clone(), empties;
            execute
        )?;
        let insert = Sql::same(
            "INSERT INTO activity_logs (id, workspace_id, activity_type, method, summary, \
             request_body, status, error_detail, created_at) \
             VALUES ($1, $2, 'cron_run', 'cron', $3, $4, $5, $6, $7)",
        );
        db_query!(
            tx.exec(), query, insert,
            DbUuid(Uuid::new_v4()),
            ws,
            outcome.summary.clone(),
            Json(&outcome.request),
            status.clone(),
            error,
            now;
            execute
        )?;
        tx.commit().await?;
        Ok(Some(status))
    }
}
