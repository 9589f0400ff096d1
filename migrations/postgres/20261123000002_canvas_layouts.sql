-- Canvas positions of workspaces (idempotent over the reference schema).
CREATE TABLE IF NOT EXISTS canvas_layouts (
    workspace_id UUID PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    x            FLOAT8 NOT NULL DEFAULT 0,
    y            FLOAT8 NOT NULL DEFAULT 0,
    collapsed    BOOLEAN DEFAULT false
);
