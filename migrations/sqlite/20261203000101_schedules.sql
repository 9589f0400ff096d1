-- Cron schedules (SQLite dialect): uuids and times as TEXT written by the application (times
-- fixed-width UTC RFC 3339, so text order is time order). The `claim_*` columns hold a
-- replica's claim on a due run (see the PostgreSQL migration).

CREATE TABLE workspace_schedules (
    id                      TEXT PRIMARY KEY NOT NULL,
    workspace_id            TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name                    TEXT NOT NULL DEFAULT '',
    cron_expr               TEXT NOT NULL,
    timezone                TEXT NOT NULL DEFAULT 'UTC',
    prompt                  TEXT NOT NULL,
    enabled                 INTEGER NOT NULL DEFAULT 1,
    last_run_at             TEXT,
    next_run_at             TEXT,
    run_count               INTEGER NOT NULL DEFAULT 0,
    last_status             TEXT DEFAULT '',
    last_error              TEXT DEFAULT '',
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    source                  TEXT NOT NULL DEFAULT 'runtime' CHECK (source IN ('template', 'runtime')),
    consecutive_empty_runs  INTEGER NOT NULL DEFAULT 0,
    claim_token             TEXT,
    claim_expires_at        TEXT,
    claim_slot              TEXT,
    claim_sent              INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_schedules_workspace ON workspace_schedules(workspace_id);
CREATE INDEX idx_schedules_next_run ON workspace_schedules(enabled, next_run_at) WHERE enabled;
CREATE UNIQUE INDEX idx_schedules_workspace_name ON workspace_schedules(workspace_id, name);
CREATE INDEX idx_schedules_claims ON workspace_schedules(claim_expires_at) WHERE claim_token IS NOT NULL;
