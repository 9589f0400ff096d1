-- One-time bootstrap tokens of workspaces whose backend cannot deliver their auth token
-- (EC2: the user-data is readable from the instance). Only the SHA-256 is kept; the first
-- registration consumes the row and receives the real token.
CREATE TABLE IF NOT EXISTS workspace_bootstrap_tokens (
    workspace_id  UUID PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    token_hash    BYTEA NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);
