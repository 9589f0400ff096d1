//! One flush of the group-commit writer: a multi-row insert of activity rows and the
//! coalesced updates in one transaction; notifications after it.

use std::collections::HashSet;

use molecule_domain::WorkspaceId;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Coalesced;
use crate::activity::{COLUMNS, placeholders};
use crate::db::{Db, Pool, Sql, Tx};
use crate::types::{DbTime, DbUuid};
use crate::workspaces::Heartbeat;
use crate::{ActivityRow, StoreError};

/// Binds per activity row (the columns of `activity_logs`).
const BINDS_PER_ROW: usize = 16;

/// Writes `rows` and the coalesced updates; answers the ids of the rows stored. One
/// transaction when it can; when it fails (a row the database refuses), each row is tried on
/// its own so that one bad row loses nothing else.
pub(super) async fn write(
    db: &Pool,
    rows: &[&ActivityRow],
    coalesced: &Coalesced,
) -> HashSet<Uuid> {
    match write_all(db, rows, coalesced).await {
        Ok(()) => rows.iter().map(|r| r.id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, rows = rows.len(), "group commit failed: writing one by one");
            let mut stored = HashSet::new();
            for row in rows {
                match insert_alone(db, row).await {
                    Ok(()) => {
                        stored.insert(row.id);
                    }
                    Err(e) => tracing::error!(
                        workspace = %row.workspace_id,
                        error = %e,
                        "an activity row could not be written"
                    ),
                }
            }
            if let Err(e) = update_alone(db, coalesced).await {
                tracing::error!(error = %e, "coalesced heartbeat and activity times lost");
            }
            stored
        }
    }
}

async fn write_all(db: &Pool, rows: &[&ActivityRow], c: &Coalesced) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    insert(&mut tx, rows).await?;
    updates(&mut tx, c).await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_alone(db: &Pool, row: &ActivityRow) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    insert(&mut tx, &[row]).await?;
    tx.commit().await?;
    Ok(())
}

async fn update_alone(db: &Pool, c: &Coalesced) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    updates(&mut tx, c).await?;
    tx.commit().await?;
    Ok(())
}

/// Binds the 16 columns of one row onto a query of either backend.
macro_rules! bind_row {
    ($query:expr, $row:expr) => {{
        let row: &ActivityRow = $row;
        $query
            .bind(DbUuid(row.id))
            .bind(DbUuid::from(row.workspace_id))
            .bind(row.activity_type.clone())
            .bind(row.source_id.map(DbUuid::from))
            .bind(row.caller.clone())
            .bind(row.target_id.map(DbUuid::from))
            .bind(row.method.clone())
            .bind(row.summary.clone())
            .bind(row.request_body.as_ref().map(Json))
            .bind(row.response_body.as_ref().map(Json))
            .bind(row.tool_trace.as_ref().map(Json))
            .bind(row.duration_ms.and_then(|d| i32::try_from(d).ok()))
            .bind(row.status.clone())
            .bind(row.error_detail.clone())
            .bind(row.idempotency_key.clone())
            .bind(DbTime::at(row.created_at))
    }};
}

/// Inserts the rows in multi-row statements.
///
/// On SQLite the placeholders are anonymous (`?`): sqlx looks up the name of every numbered
/// parameter with `sqlite3_bind_parameter_name`, which scans the statement's parameter list,
/// so numbered ones cost time quadratic in the binds (it was most of the writer's CPU under
/// the A2A bench); anonymous ones have no name to look up.
async fn insert(tx: &mut Tx, rows: &[&ActivityRow]) -> Result<(), StoreError> {
    // PostgreSQL allows 65 535 binds, SQLite 32 766: 1 000 rows fit both.
    let anonymous = matches!(tx.exec(), Db::Sqlite(_));
    for chunk in rows.chunks(1000) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                if anonymous {
                    format!("({})", ["?"; BINDS_PER_ROW].join(", "))
                } else {
                    format!("({})", placeholders(i * BINDS_PER_ROW))
                }
            })
            .collect();
        let sql = format!(
            "INSERT INTO activity_logs ({COLUMNS}) VALUES {}",
            values.join(", ")
        );
        match tx.exec() {
            Db::Postgres(conn) => {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = bind_row!(query, *row);
                }
                query.execute(conn).await?;
            }
            Db::Sqlite(conn) => {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = bind_row!(query, *row);
                }
                query.execute(conn).await?;
            }
        }
    }
    Ok(())
}

/// Writes the coalesced heartbeats, times and token uses.
async fn updates(tx: &mut Tx, c: &Coalesced) -> Result<(), StoreError> {
    for (id, (hb, at)) in &c.heartbeats {
        apply_heartbeat(tx, *id, hb, *at).await?;
    }
    let activity = Sql::same(
        "UPDATE workspaces SET last_activity_at = $2 WHERE id = $1 \
         AND (last_activity_at IS NULL OR last_activity_at < $2)",
    );
    for (id, at) in &c.activity_times {
        touch(tx, &activity, *id, *at).await?;
    }
    let outbound = Sql::same(
        "UPDATE workspaces SET last_outbound_at = $2 WHERE id = $1 \
         AND (last_outbound_at IS NULL OR last_outbound_at < $2)",
    );
    for (id, at) in &c.outbound_times {
        touch(tx, &outbound, *id, *at).await?;
    }
    let used = Sql::same(
        "UPDATE workspace_auth_tokens SET last_used_at = $2 \
         WHERE token_hash = $1 AND revoked_at IS NULL",
    );
    for (hash, at) in &c.token_uses {
        db_query!(tx.exec(), query, used, hash.clone(), DbTime::at(*at); execute)?;
    }
    Ok(())
}

async fn touch(
    tx: &mut Tx,
    sql: &Sql,
    id: WorkspaceId,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    db_query!(tx.exec(), query, sql, DbUuid::from(id), DbTime::at(at); execute)?;
    Ok(())
}

/// Writes one heartbeat received at `at` into a live workspace.
async fn apply_heartbeat(
    tx: &mut Tx,
    id: WorkspaceId,
    hb: &Heartbeat,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let sql = Sql::same(
        "UPDATE workspaces SET last_heartbeat_at = $2, last_error_rate = $3, \
         last_sample_error = $4, active_tasks = $5, uptime_seconds = $6, current_task = $7, \
         monthly_spend = COALESCE($8, monthly_spend), updated_at = $2, \
         last_activity_at = CASE WHEN $5 > 0 THEN $2 ELSE last_activity_at END \
         WHERE id = $1 AND (status IS NULL OR status <> 'removed')",
    );
    db_query!(
        tx.exec(), query, sql,
        DbUuid::from(id),
        DbTime::at(at),
        hb.error_rate,
        hb.sample_error.clone(),
        hb.active_tasks,
        hb.uptime_seconds,
        hb.current_task.clone(),
        hb.monthly_spend.filter(|s| *s > 0);
        execute
    )?;
    Ok(())
}

/// Sends the queued notifications (PostgreSQL; nothing on SQLite), up to 100 per statement.
pub(super) async fn send_notices(db: &Pool, notices: &[(String, String)]) {
    let Db::Postgres(pool) = db else {
        return;
    };
    for chunk in notices.chunks(100) {
        let calls: Vec<String> = (0..chunk.len())
            .map(|i| format!("pg_notify(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!("SELECT {}", calls.join(", "));
        let mut query = sqlx::query(&sql);
        for (channel, payload) in chunk {
            query = query.bind(channel).bind(payload);
        }
        if let Err(e) = query.execute(pool).await {
            tracing::warn!(error = %e, count = chunk.len(), "cannot notify other replicas");
        }
    }
}
