-- Approvals, the canvas viewport and the workspace config blob (SQLite dialect).
CREATE TABLE canvas_viewport (
    id        TEXT PRIMARY KEY NOT NULL,
    x         REAL NOT NULL DEFAULT 0,
    y         REAL NOT NULL DEFAULT 0,
    zoom      REAL NOT NULL DEFAULT 1,
    saved_at  TEXT
);

CREATE TABLE workspace_config (
    workspace_id  TEXT PRIMARY KEY NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    data          JSONB NOT NULL DEFAULT '{}',
    updated_at    TEXT NOT NULL
);

CREATE TABLE approval_requests (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT REFERENCES workspaces(id),
    task_id       TEXT,
    action        TEXT NOT NULL,
    reason        TEXT,
    context       JSONB DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'escalated')),
    decided_by    TEXT,
    decided_at    TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX idx_approvals_workspace ON approval_requests(workspace_id);
CREATE INDEX idx_approvals_status ON approval_requests(status);
