-- The activity log and the A2A queue (SQLite dialect): uuids and times as TEXT written by the
-- application (times fixed-width UTC RFC 3339, so text order is time order), JSON as TEXT.
-- `caller` holds a system caller that is not a workspace uuid; `a2a_queue.response_body` the
-- answer of a delivered item.

CREATE TABLE activity_logs (
    id               TEXT PRIMARY KEY NOT NULL,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    activity_type    TEXT NOT NULL,
    source_id        TEXT,
    target_id        TEXT,
    method           TEXT,
    summary          TEXT,
    request_body     TEXT,
    response_body    TEXT,
    duration_ms      INTEGER,
    status           TEXT DEFAULT 'ok',
    error_detail     TEXT,
    created_at       TEXT NOT NULL,
    idempotency_key  TEXT,
    tool_trace       TEXT,
    caller           TEXT
);
CREATE INDEX idx_activity_ws_type_time
    ON activity_logs(workspace_id, activity_type, created_at DESC);
CREATE INDEX idx_activity_created_at ON activity_logs(created_at);
CREATE UNIQUE INDEX activity_logs_idempotency_uniq
    ON activity_logs(workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX idx_activity_ws_source
    ON activity_logs(workspace_id, source_id) WHERE source_id IS NOT NULL;
CREATE INDEX idx_activity_ws_target
    ON activity_logs(workspace_id, target_id) WHERE target_id IS NOT NULL;
CREATE INDEX idx_activity_ws_time_id ON activity_logs(workspace_id, created_at, id);

CREATE TABLE a2a_queue (
    id               TEXT PRIMARY KEY NOT NULL,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    caller_id        TEXT,
    priority         INTEGER NOT NULL DEFAULT 50,
    body             TEXT NOT NULL,
    method           TEXT,
    idempotency_key  TEXT,
    enqueued_at      TEXT NOT NULL,
    dispatched_at    TEXT,
    completed_at     TEXT,
    expires_at       TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'dispatched', 'completed', 'dropped', 'failed')),
    last_error       TEXT,
    caller           TEXT,
    response_body    TEXT
);
CREATE INDEX idx_a2a_queue_dispatch
    ON a2a_queue(workspace_id, priority DESC, enqueued_at ASC) WHERE status = 'queued';
CREATE INDEX idx_a2a_queue_expiry
    ON a2a_queue(expires_at) WHERE status = 'queued' AND expires_at IS NOT NULL;
CREATE UNIQUE INDEX idx_a2a_queue_idempotency
    ON a2a_queue(workspace_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN ('queued', 'dispatched');
