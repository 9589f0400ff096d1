-- Workspace and global secrets (encrypted at rest) and org API tokens (SQLite dialect).

CREATE TABLE workspace_secrets (
    id                  TEXT PRIMARY KEY NOT NULL,
    workspace_id        TEXT REFERENCES workspaces(id),
    key                 TEXT NOT NULL,
    encrypted_value     BLOB NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    encryption_version  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (workspace_id, key)
);

CREATE TABLE global_secrets (
    id                  TEXT PRIMARY KEY NOT NULL,
    key                 TEXT NOT NULL UNIQUE,
    encrypted_value     BLOB NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    encryption_version  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE org_api_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    token_hash    BLOB NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    name          TEXT,
    created_by    TEXT,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT,
    org_id        TEXT REFERENCES workspaces(id) ON DELETE SET NULL
);
CREATE INDEX org_api_tokens_live_idx ON org_api_tokens(token_hash) WHERE revoked_at IS NULL;
CREATE INDEX org_api_tokens_org_id_idx ON org_api_tokens(org_id) WHERE org_id IS NOT NULL;
