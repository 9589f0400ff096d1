-- Workspaces, their auth tokens and the structure event log.
--
-- Table and column names and types follow the reference server's schema, and every statement
-- is idempotent, so a database created by the reference server is adopted in place: running
-- this file against it changes nothing that exists and adds only what is missing.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'workspace_status') THEN
        CREATE TYPE workspace_status AS ENUM (
            'provisioning', 'online', 'offline', 'degraded', 'failed',
            'removed', 'paused', 'hibernated', 'awaiting_agent', 'hibernating'
        );
    END IF;
END
$$;
ALTER TYPE workspace_status ADD VALUE IF NOT EXISTS 'awaiting_agent';
ALTER TYPE workspace_status ADD VALUE IF NOT EXISTS 'hibernating';

CREATE TABLE IF NOT EXISTS workspaces (
    id                       UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     TEXT NOT NULL,
    role                     TEXT,
    tier                     INTEGER DEFAULT 1,
    status                   workspace_status DEFAULT 'provisioning',
    url                      TEXT,
    agent_card               JSONB,
    parent_id                UUID REFERENCES workspaces(id),
    forwarded_to             UUID REFERENCES workspaces(id),
    last_heartbeat_at        TIMESTAMPTZ,
    last_error_rate          FLOAT8 DEFAULT 0,
    last_sample_error        TEXT,
    active_tasks             INTEGER DEFAULT 0,
    uptime_seconds           INTEGER DEFAULT 0,
    created_at               TIMESTAMPTZ DEFAULT now(),
    updated_at               TIMESTAMPTZ DEFAULT now()
);

ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS source_bundle_id TEXT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS current_task TEXT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS awareness_namespace TEXT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS runtime TEXT DEFAULT 'langgraph';
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS workspace_dir TEXT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS workspace_access VARCHAR(20) NOT NULL DEFAULT 'none'
    CHECK (workspace_access IN ('none', 'read_only', 'read_write'));
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS budget_limit BIGINT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS monthly_spend BIGINT NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS hibernation_idle_minutes INT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS last_outbound_at TIMESTAMPTZ;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS max_concurrent_tasks INTEGER NOT NULL DEFAULT 1;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS instance_id TEXT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS platform_inbound_secret TEXT;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS delivery_mode TEXT NOT NULL DEFAULT 'push'
    CHECK (delivery_mode IN ('push', 'poll'));
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS runtime_image_digest TEXT;

CREATE INDEX IF NOT EXISTS idx_workspaces_parent_id ON workspaces(parent_id);
CREATE INDEX IF NOT EXISTS idx_workspaces_status ON workspaces(status);
CREATE INDEX IF NOT EXISTS idx_workspaces_hibernation ON workspaces(hibernation_idle_minutes)
    WHERE hibernation_idle_minutes IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_workspaces_instance_id ON workspaces(instance_id)
    WHERE instance_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_workspaces_runtime_image_digest ON workspaces(runtime_image_digest)
    WHERE runtime_image_digest IS NOT NULL;

CREATE TABLE IF NOT EXISTS workspace_auth_tokens (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    token_hash    BYTEA NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS workspace_auth_tokens_live_idx ON workspace_auth_tokens(workspace_id)
    WHERE revoked_at IS NULL;

CREATE TABLE IF NOT EXISTS structure_events (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type    TEXT NOT NULL,
    workspace_id  UUID,
    agent_id      UUID,
    target_id     UUID,
    payload       JSONB,
    created_at    TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_events_workspace_id ON structure_events(workspace_id);
CREATE INDEX IF NOT EXISTS idx_events_created_at ON structure_events(created_at);
