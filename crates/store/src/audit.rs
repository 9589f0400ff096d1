//! The audit ledger (`audit_events`): HMAC-chained records written by the agent runtime, read
//! and verified by the platform.

use molecule_domain::WorkspaceId;
use time::OffsetDateTime;

use crate::StoreError;
use crate::db::{Pool, Sql};
use crate::types::{DbTime, DbUuid};

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The runtime's id of the record.
    pub id: String,
    /// When it happened.
    pub timestamp: OffsetDateTime,
    /// The agent.
    pub agent_id: String,
    /// The agent's session.
    pub session_id: String,
    /// `task_start`, `llm_call`, `tool_call` or `task_end`.
    pub operation: String,
    /// Hash of the input.
    pub input_hash: Option<String>,
    /// Hash of the output.
    pub output_hash: Option<String>,
    /// The model used.
    pub model_used: Option<String>,
    /// Whether a person oversaw it.
    pub human_oversight_flag: bool,
    /// Whether it was flagged as risky.
    pub risk_flag: bool,
    /// The previous record's HMAC of the same agent.
    pub prev_hmac: Option<String>,
    /// This record's HMAC.
    pub hmac: String,
    /// The workspace.
    pub workspace_id: WorkspaceId,
}

/// Filters of a ledger listing.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this agent.
    pub agent_id: Option<String>,
    /// Only this session.
    pub session_id: Option<String>,
    /// `timestamp >= from`.
    pub from: Option<OffsetDateTime>,
    /// `timestamp < to`.
    pub to: Option<OffsetDateTime>,
    /// At most this many rows.
    pub limit: i64,
    /// Skipped rows.
    pub offset: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    timestamp: DbTime,
    agent_id: String,
    session_id: String,
    operation: String,
    input_hash: Option<String>,
    output_hash: Option<String>,
    model_used: Option<String>,
    human_oversight_flag: bool,
    risk_flag: bool,
    prev_hmac: Option<String>,
    hmac: String,
    workspace_id: DbUuid,
}

const FILTER: &str = "workspace_id = $1 AND ($2 IS NULL OR agent_id = $2) \
     AND ($3 IS NULL OR session_id = $3) AND ($4 IS NULL OR timestamp >= $4) \
     AND ($5 IS NULL OR timestamp < $5)";

/// The audit ledger in the database.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    db: &'a Pool,
}

impl<'a> Audit<'a> {
    pub(crate) fn new(db: &'a Pool) -> Self {
        Self { db }
    }

    /// Stores one record (the runtime's write path; the HTTP API only reads).
    pub async fn record(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let sql = Sql::same(
            "INSERT INTO audit_events (id, timestamp, agent_id, session_id, operation, input_hash, \
             output_hash, model_used, human_oversight_flag, risk_flag, prev_hmac, hmac, workspace_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        );
        db_query!(
            self.db.exec(), query, sql,
            e.id.clone(), DbTime::at(e.timestamp), e.agent_id.clone(), e.session_id.clone(),
            e.operation.clone(), e.input_hash.clone(), e.output_hash.clone(),
            e.model_used.clone(), e.human_oversight_flag, e.risk_flag, e.prev_hmac.clone(),
            e.hmac.clone(), DbUuid::from(e.workspace_id);
            execute
        )
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The records of `ws` matching `q` in ledger order (timestamp, then id), and how many
    /// match in all.
    pub async fn list(
        &self,
        ws: WorkspaceId,
        q: &AuditQuery,
    ) -> Result<(Vec<AuditEvent>, i64), StoreError> {
        let count = Sql::split(
            "SELECT COUNT(*) FROM audit_events WHERE workspace_id = $1 \
             AND ($2::text IS NULL OR agent_id = $2) AND ($3::text IS NULL OR session_id = $3) \
             AND ($4::timestamptz IS NULL OR timestamp >= $4) \
             AND ($5::timestamptz IS NULL OR timestamp < $5)",
            "SELECT COUNT(*) FROM audit_events WHERE __FILTER__",
        )
        .replace("__FILTER__", FILTER);
        let (agent, session) = (q.agent_id.clone(), q.session_id.clone());
        let (from, to) = (q.from.map(DbTime::at), q.to.map(DbTime::at));
        let total = db_query!(
            self.db.exec(), query_scalar::<i64>, count,
            DbUuid::from(ws), agent.clone(), session.clone(), from, to;
            fetch_one
        )?;
        let select = Sql::split(
            "SELECT * FROM audit_events WHERE workspace_id = $1 \
             AND ($2::text IS NULL OR agent_id = $2) AND ($3::text IS NULL OR session_id = $3) \
             AND ($4::timestamptz IS NULL OR timestamp >= $4) \
             AND ($5::timestamptz IS NULL OR timestamp < $5) \
             ORDER BY timestamp ASC, id ASC LIMIT $6 OFFSET $7",
            "SELECT * FROM audit_events WHERE __FILTER__ \
             ORDER BY timestamp ASC, id ASC LIMIT $6 OFFSET $7",
        )
        .replace("__FILTER__", FILTER);
        let rows: Vec<Row> = db_query!(
            self.db.exec(), query_as::<Row>, select,
            DbUuid::from(ws), agent, session, from, to, q.limit, q.offset;
            fetch_all
        )?;
        let events = rows
            .into_iter()
            .map(|r| AuditEvent {
                id: r.id,
                timestamp: r.timestamp.0,
                agent_id: r.agent_id,
                session_id: r.session_id,
                operation: r.operation,
                input_hash: r.input_hash,
                output_hash: r.output_hash,
                model_used: r.model_used,
                human_oversight_flag: r.human_oversight_flag,
                risk_flag: r.risk_flag,
                prev_hmac: r.prev_hmac,
                hmac: r.hmac,
                workspace_id: r.workspace_id.into(),
            })
            .collect();
        Ok((events, total))
    }
}
