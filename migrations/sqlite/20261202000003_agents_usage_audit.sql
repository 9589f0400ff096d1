-- Agent model records, daily token usage and the audit ledger (SQLite dialect).
CREATE TABLE agents (
    id              TEXT PRIMARY KEY NOT NULL,
    workspace_id    TEXT REFERENCES workspaces(id),
    model           TEXT,
    status          TEXT DEFAULT 'active',
    removed_at      TEXT,
    removal_reason  TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX idx_agents_workspace_id ON agents(workspace_id);

CREATE TABLE workspace_token_usage (
    id                  TEXT PRIMARY KEY NOT NULL,
    workspace_id        TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    period_start        TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    call_count          INTEGER NOT NULL DEFAULT 0,
    estimated_cost_usd  REAL NOT NULL DEFAULT 0,
    updated_at          TEXT NOT NULL,
    UNIQUE (workspace_id, period_start)
);

CREATE TABLE audit_events (
    id                    TEXT PRIMARY KEY NOT NULL,
    timestamp             TEXT NOT NULL,
    agent_id              TEXT NOT NULL,
    session_id            TEXT NOT NULL,
    operation             TEXT NOT NULL,
    input_hash            TEXT,
    output_hash           TEXT,
    model_used            TEXT,
    human_oversight_flag  BOOLEAN NOT NULL DEFAULT 0,
    risk_flag             BOOLEAN NOT NULL DEFAULT 0,
    prev_hmac             TEXT,
    hmac                  TEXT NOT NULL,
    workspace_id          TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE
);
CREATE INDEX idx_audit_events_agent_id ON audit_events(agent_id);
CREATE INDEX idx_audit_events_session_id ON audit_events(session_id);
CREATE INDEX idx_audit_events_workspace_id ON audit_events(workspace_id);
CREATE INDEX idx_audit_events_timestamp ON audit_events(timestamp DESC);
