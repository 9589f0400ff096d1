-- Agent memories (HMA), key/value memory, workflow checkpoints and platform instructions
-- (SQLite dialect). Full-text search over agent_memories is an FTS5 external-content table
-- kept in sync by triggers (porter stemming, like PostgreSQL's 'english' configuration).
-- `seq` is the table's rowid alias, so the FTS rowids survive VACUUM. JSON columns are TEXT:
-- a JSONB column has NUMERIC affinity in SQLite, which would turn the JSON text `3` into 3.
CREATE TABLE agent_memories (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    content       TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('LOCAL', 'TEAM', 'GLOBAL')),
    namespace     TEXT NOT NULL DEFAULT 'general' CHECK (length(namespace) <= 50),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX idx_memories_scope ON agent_memories(scope);
CREATE INDEX idx_memories_ns ON agent_memories(workspace_id, namespace);
CREATE INDEX idx_memories_ws_created ON agent_memories(workspace_id, created_at DESC);

CREATE VIRTUAL TABLE agent_memories_fts USING fts5(
    content, content = 'agent_memories', content_rowid = 'seq', tokenize = 'porter unicode61'
);
CREATE TRIGGER agent_memories_fts_insert AFTER INSERT ON agent_memories BEGIN
    INSERT INTO agent_memories_fts(rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER agent_memories_fts_delete AFTER DELETE ON agent_memories BEGIN
    INSERT INTO agent_memories_fts(agent_memories_fts, rowid, content)
        VALUES ('delete', old.seq, old.content);
END;
CREATE TRIGGER agent_memories_fts_update AFTER UPDATE OF content ON agent_memories BEGIN
    INSERT INTO agent_memories_fts(agent_memories_fts, rowid, content)
        VALUES ('delete', old.seq, old.content);
    INSERT INTO agent_memories_fts(rowid, content) VALUES (new.seq, new.content);
END;

CREATE TABLE workspace_memory (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    expires_at    TEXT,
    updated_at    TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    UNIQUE (workspace_id, key)
);
CREATE INDEX workspace_memory_workspace_id_idx ON workspace_memory(workspace_id);

CREATE TABLE workflow_checkpoints (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    workflow_id   TEXT NOT NULL,
    step_name     TEXT NOT NULL,
    step_index    INTEGER NOT NULL,
    completed_at  TEXT NOT NULL,
    payload       TEXT,
    UNIQUE (workspace_id, workflow_id, step_name)
);
CREATE INDEX idx_wf_checkpoints_ws
    ON workflow_checkpoints(workspace_id, workflow_id, completed_at DESC);

CREATE TABLE platform_instructions (
    id            TEXT PRIMARY KEY NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('global', 'team', 'workspace')),
    scope_target  TEXT,
    title         TEXT NOT NULL CHECK (length(title) <= 200),
    content       TEXT NOT NULL CHECK (length(content) <= 8192),
    priority      INTEGER NOT NULL DEFAULT 0,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX idx_platform_instructions_scope
    ON platform_instructions(scope, scope_target) WHERE enabled;
