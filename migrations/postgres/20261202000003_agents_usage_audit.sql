-- Agent model records, daily token usage and the audit ledger (reference tables 002, 025, 030).
CREATE TABLE IF NOT EXISTS agents (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id    UUID REFERENCES workspaces(id),
    model           TEXT,
    status          TEXT DEFAULT 'active',
    removed_at      TIMESTAMPTZ,
    removal_reason  TEXT,
    created_at      TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_agents_workspace_id ON agents(workspace_id);

CREATE TABLE IF NOT EXISTS workspace_token_usage (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id        UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    period_start        TIMESTAMPTZ NOT NULL,
    input_tokens        BIGINT NOT NULL DEFAULT 0,
    output_tokens       BIGINT NOT NULL DEFAULT 0,
    call_count          INTEGER NOT NULL DEFAULT 0,
    estimated_cost_usd  NUMERIC(12,6) NOT NULL DEFAULT 0,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT workspace_token_usage_ws_period UNIQUE (workspace_id, period_start)
);

CREATE TABLE IF NOT EXISTS audit_events (
    id                    TEXT PRIMARY KEY,
    timestamp             TIMESTAMPTZ NOT NULL,
    agent_id              TEXT NOT NULL,
    session_id            TEXT NOT NULL,
    operation             TEXT NOT NULL,
    input_hash            TEXT,
    output_hash           TEXT,
    model_used            TEXT,
    human_oversight_flag  BOOLEAN NOT NULL DEFAULT false,
    risk_flag             BOOLEAN NOT NULL DEFAULT false,
    prev_hmac             TEXT,
    hmac                  TEXT NOT NULL,
    workspace_id          UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_audit_events_agent_id ON audit_events(agent_id);
CREATE INDEX IF NOT EXISTS idx_audit_events_session_id ON audit_events(session_id);
CREATE INDEX IF NOT EXISTS idx_audit_events_workspace_id ON audit_events(workspace_id);
CREATE INDEX IF NOT EXISTS idx_audit_events_timestamp ON audit_events(timestamp DESC);
