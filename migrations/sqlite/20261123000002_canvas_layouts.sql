-- Canvas positions of workspaces.
CREATE TABLE canvas_layouts (
    workspace_id TEXT PRIMARY KEY NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    x            REAL NOT NULL DEFAULT 0,
    y            REAL NOT NULL DEFAULT 0,
    collapsed    INTEGER DEFAULT 0
);
