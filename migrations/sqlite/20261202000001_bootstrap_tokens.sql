-- One-time bootstrap tokens of workspaces whose backend cannot deliver their auth token
-- (EC2: the user-data is readable from the instance). Only the SHA-256 is kept; the first
-- registration consumes the row and receives the real token (SQLite dialect).
CREATE TABLE workspace_bootstrap_tokens (
    workspace_id  TEXT PRIMARY KEY NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
