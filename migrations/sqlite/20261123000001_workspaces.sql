-- Workspaces, their auth tokens and the structure event log (SQLite dialect).
--
-- The same tables and columns as the PostgreSQL schema. UUIDs are hyphenated TEXT; timestamps
-- are UTC RFC 3339 TEXT with six fractional digits, written by the application, so text order
-- is time order; JSON is TEXT; the status enum is a CHECK constraint.

CREATE TABLE workspaces (
    id                       TEXT PRIMARY KEY NOT NULL,
    name                     TEXT NOT NULL,
    role                     TEXT,
    tier                     INTEGER DEFAULT 1,
    status                   TEXT DEFAULT 'provisioning' CHECK (status IN (
        'provisioning', 'online', 'offline', 'degraded', 'failed',
        'removed', 'paused', 'hibernated', 'awaiting_agent', 'hibernating')),
    url                      TEXT,
    agent_card               TEXT,
    parent_id                TEXT REFERENCES workspaces(id),
    forwarded_to             TEXT REFERENCES workspaces(id),
    last_heartbeat_at        TEXT,
    last_error_rate          REAL DEFAULT 0,
    last_sample_error        TEXT,
    active_tasks             INTEGER DEFAULT 0,
    uptime_seconds           INTEGER DEFAULT 0,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL,
    source_bundle_id         TEXT,
    current_task             TEXT,
    awareness_namespace      TEXT,
    runtime                  TEXT DEFAULT 'langgraph',
    workspace_dir            TEXT,
    workspace_access         TEXT NOT NULL DEFAULT 'none'
        CHECK (workspace_access IN ('none', 'read_only', 'read_write')),
    budget_limit             INTEGER,
    monthly_spend            INTEGER NOT NULL DEFAULT 0,
    hibernation_idle_minutes INTEGER,
    last_outbound_at         TEXT,
    max_concurrent_tasks     INTEGER NOT NULL DEFAULT 1,
    instance_id              TEXT,
    platform_inbound_secret  TEXT,
    delivery_mode            TEXT NOT NULL DEFAULT 'push' CHECK (delivery_mode IN ('push', 'poll')),
    runtime_image_digest     TEXT
);

CREATE INDEX idx_workspaces_parent_id ON workspaces(parent_id);
CREATE INDEX idx_workspaces_status ON workspaces(status);
CREATE INDEX idx_workspaces_hibernation ON workspaces(hibernation_idle_minutes)
    WHERE hibernation_idle_minutes IS NOT NULL;
CREATE INDEX idx_workspaces_instance_id ON workspaces(instance_id) WHERE instance_id IS NOT NULL;

CREATE TABLE workspace_auth_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    token_hash    BLOB NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX workspace_auth_tokens_live_idx ON workspace_auth_tokens(workspace_id)
    WHERE revoked_at IS NULL;

CREATE TABLE structure_events (
    id            TEXT PRIMARY KEY NOT NULL,
    event_type    TEXT NOT NULL,
    workspace_id  TEXT,
    agent_id      TEXT,
    target_id     TEXT,
    payload       TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX idx_events_workspace_id ON structure_events(workspace_id);
CREATE INDEX idx_events_created_at ON structure_events(created_at);
