-- Agent memories (HMA), key/value memory, workflow checkpoints and platform instructions
-- (reference tables 006, 008, 017, 023, 040 and 20260417000000). Idempotent over a reference
-- database. The reference's optional pgvector column (031) is not created: the semantic path is
-- dead in the reference (schema.md) and this server has no embedding function.
CREATE TABLE IF NOT EXISTS agent_memories (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  UUID NOT NULL REFERENCES workspaces(id),
    content       TEXT NOT NULL,
    scope         VARCHAR(10) NOT NULL CHECK (scope IN ('LOCAL', 'TEAM', 'GLOBAL')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE agent_memories ADD COLUMN IF NOT EXISTS namespace VARCHAR(50) NOT NULL DEFAULT 'general';
ALTER TABLE agent_memories ADD COLUMN IF NOT EXISTS content_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', content)) STORED;
CREATE INDEX IF NOT EXISTS idx_memories_workspace ON agent_memories(workspace_id);
CREATE INDEX IF NOT EXISTS idx_memories_scope ON agent_memories(scope);
CREATE INDEX IF NOT EXISTS idx_memories_fts ON agent_memories USING GIN (content_tsv);
CREATE INDEX IF NOT EXISTS idx_memories_ns ON agent_memories(workspace_id, namespace);
-- Recall without a query pages a workspace's newest rows.
CREATE INDEX IF NOT EXISTS idx_memories_ws_created ON agent_memories(workspace_id, created_at DESC);

CREATE TABLE IF NOT EXISTS workspace_memory (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value         JSONB NOT NULL,
    expires_at    TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, key)
);
ALTER TABLE workspace_memory ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS workspace_memory_workspace_id_idx ON workspace_memory(workspace_id);

CREATE TABLE IF NOT EXISTS workflow_checkpoints (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    workflow_id   TEXT NOT NULL,
    step_name     TEXT NOT NULL,
    step_index    INT NOT NULL,
    completed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    payload       JSONB,
    UNIQUE (workspace_id, workflow_id, step_name)
);
CREATE INDEX IF NOT EXISTS idx_wf_checkpoints_ws
    ON workflow_checkpoints(workspace_id, workflow_id, completed_at DESC);

CREATE TABLE IF NOT EXISTS platform_instructions (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    scope         TEXT NOT NULL CHECK (scope IN ('global', 'team', 'workspace')),
    scope_target  TEXT,
    title         TEXT NOT NULL CHECK (length(title) <= 200),
    content       TEXT NOT NULL CHECK (length(content) <= 8192),
    priority      INT DEFAULT 0,
    enabled       BOOLEAN DEFAULT true,
    created_at    TIMESTAMPTZ DEFAULT now(),
    updated_at    TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_platform_instructions_scope
    ON platform_instructions(scope, scope_target) WHERE enabled;
