-- The activity log (A2A traffic, agent reports, delegations, notifications) and the A2A queue
-- of messages for busy targets.
--
-- The reference's tables and columns (its migrations 009, 021, 039, 042); every statement is
-- idempotent so a reference database is adopted in place. Two columns are ours: `caller` holds
-- a system caller (`webhook:…`, `system:…`, `channel:…`) that is not a workspace uuid, and
-- `a2a_queue.response_body` keeps the answer of a delivered item for the queue-status route.

CREATE TABLE IF NOT EXISTS activity_logs (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id   UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    activity_type  TEXT NOT NULL,
    source_id      UUID,
    target_id      UUID,
    method         TEXT,
    summary        TEXT,
    request_body   JSONB,
    response_body  JSONB,
    duration_ms    INTEGER,
    status         TEXT DEFAULT 'ok',
    error_detail   TEXT,
    created_at     TIMESTAMPTZ DEFAULT now()
);
ALTER TABLE activity_logs ADD COLUMN IF NOT EXISTS idempotency_key TEXT;
ALTER TABLE activity_logs ADD COLUMN IF NOT EXISTS tool_trace JSONB;
ALTER TABLE activity_logs ADD COLUMN IF NOT EXISTS caller TEXT;

CREATE INDEX IF NOT EXISTS idx_activity_ws_type_time
    ON activity_logs(workspace_id, activity_type, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_activity_created_at ON activity_logs(created_at);
CREATE UNIQUE INDEX IF NOT EXISTS activity_logs_idempotency_uniq
    ON activity_logs(workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_activity_logs_tool_trace
    ON activity_logs USING GIN (tool_trace) WHERE tool_trace IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_activity_ws_source
    ON activity_logs(workspace_id, source_id) WHERE source_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_activity_ws_target
    ON activity_logs(workspace_id, target_id) WHERE target_id IS NOT NULL;
-- Ours: the `(created_at, id)` keyset of the `since_id` cursor and of the newest-first list.
CREATE INDEX IF NOT EXISTS idx_activity_ws_time_id
    ON activity_logs(workspace_id, created_at, id);

CREATE TABLE IF NOT EXISTS a2a_queue (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    caller_id        UUID,
    priority         SMALLINT NOT NULL DEFAULT 50,
    body             JSONB NOT NULL,
    method           TEXT,
    idempotency_key  TEXT,
    enqueued_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    dispatched_at    TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    expires_at       TIMESTAMPTZ,
    attempts         INT NOT NULL DEFAULT 0,
    status           TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'dispatched', 'completed', 'dropped', 'failed')),
    last_error       TEXT
);
ALTER TABLE a2a_queue ADD COLUMN IF NOT EXISTS caller TEXT;
ALTER TABLE a2a_queue ADD COLUMN IF NOT EXISTS response_body JSONB;

CREATE INDEX IF NOT EXISTS idx_a2a_queue_dispatch
    ON a2a_queue(workspace_id, priority DESC, enqueued_at ASC) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS idx_a2a_queue_expiry
    ON a2a_queue(expires_at) WHERE status = 'queued' AND expires_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_a2a_queue_idempotency
    ON a2a_queue(workspace_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN ('queued', 'dispatched');
