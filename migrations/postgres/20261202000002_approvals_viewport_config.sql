-- Approvals, the canvas viewport and the workspace config blob (reference tables 005-007).
CREATE TABLE IF NOT EXISTS canvas_viewport (
    id        UUID PRIMARY KEY,
    x         DOUBLE PRECISION NOT NULL DEFAULT 0,
    y         DOUBLE PRECISION NOT NULL DEFAULT 0,
    zoom      DOUBLE PRECISION NOT NULL DEFAULT 1,
    saved_at  TIMESTAMPTZ DEFAULT now()
);

CREATE TABLE IF NOT EXISTS workspace_config (
    workspace_id  UUID PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    data          JSONB NOT NULL DEFAULT '{}',
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS approval_requests (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  UUID REFERENCES workspaces(id),
    task_id       TEXT,
    action        TEXT NOT NULL,
    reason        TEXT,
    context       JSONB DEFAULT '{}',
    status        TEXT DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'escalated')),
    decided_by    TEXT,
    decided_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_approvals_workspace ON approval_requests(workspace_id);
CREATE INDEX IF NOT EXISTS idx_approvals_status ON approval_requests(status);
