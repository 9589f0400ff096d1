-- Cron schedules (the reference's migrations 015, 022, 032, 033), idempotent so a reference
-- database is adopted in place. The `claim_*` columns are ours: a replica claims a due run
-- (a lease with a fencing token) before firing it, so several replicas on one database fire
-- each run once, and a run whose replica died is taken over when its lease expires.

CREATE TABLE IF NOT EXISTS workspace_schedules (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id   UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name           TEXT NOT NULL DEFAULT '',
    cron_expr      TEXT NOT NULL,
    timezone       TEXT NOT NULL DEFAULT 'UTC',
    prompt         TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL DEFAULT true,
    last_run_at    TIMESTAMPTZ,
    next_run_at    TIMESTAMPTZ,
    run_count      INTEGER NOT NULL DEFAULT 0,
    last_status    TEXT DEFAULT '',
    last_error     TEXT DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE workspace_schedules ADD COLUMN IF NOT EXISTS source TEXT NOT NULL DEFAULT 'runtime';
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'workspace_schedules_source_check') THEN
        ALTER TABLE workspace_schedules ADD CONSTRAINT workspace_schedules_source_check
            CHECK (source IN ('template', 'runtime'));
    END IF;
END $$;
ALTER TABLE workspace_schedules ADD COLUMN IF NOT EXISTS consecutive_empty_runs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspace_schedules ADD COLUMN IF NOT EXISTS claim_token UUID;
ALTER TABLE workspace_schedules ADD COLUMN IF NOT EXISTS claim_expires_at TIMESTAMPTZ;
ALTER TABLE workspace_schedules ADD COLUMN IF NOT EXISTS claim_slot TIMESTAMPTZ;
ALTER TABLE workspace_schedules ADD COLUMN IF NOT EXISTS claim_sent BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX IF NOT EXISTS idx_schedules_workspace ON workspace_schedules(workspace_id);
CREATE INDEX IF NOT EXISTS idx_schedules_next_run
    ON workspace_schedules(enabled, next_run_at) WHERE enabled;
CREATE UNIQUE INDEX IF NOT EXISTS idx_schedules_workspace_name
    ON workspace_schedules(workspace_id, name);
CREATE INDEX IF NOT EXISTS idx_schedules_claims
    ON workspace_schedules(claim_expires_at) WHERE claim_token IS NOT NULL;

-- 033: prompts never carry CR characters.
UPDATE workspace_schedules SET prompt = replace(prompt, chr(13), '') WHERE prompt LIKE '%' || chr(13) || '%';
