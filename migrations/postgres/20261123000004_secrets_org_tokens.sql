-- Workspace and global secrets (encrypted at rest) and org API tokens.
--
-- The reference's tables and columns (its migrations 004, 012, 018, 035, 036); every statement
-- is idempotent so a reference database is adopted in place.

CREATE TABLE IF NOT EXISTS workspace_secrets (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     UUID REFERENCES workspaces(id),
    key              TEXT NOT NULL,
    encrypted_value  BYTEA NOT NULL,
    created_at       TIMESTAMPTZ DEFAULT now(),
    updated_at       TIMESTAMPTZ DEFAULT now(),
    UNIQUE (workspace_id, key)
);
ALTER TABLE workspace_secrets ADD COLUMN IF NOT EXISTS encryption_version INT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS global_secrets (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    key              TEXT NOT NULL UNIQUE,
    encrypted_value  BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE global_secrets ADD COLUMN IF NOT EXISTS encryption_version INT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS org_api_tokens (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash    BYTEA NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    name          TEXT,
    created_by    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
ALTER TABLE org_api_tokens ADD COLUMN IF NOT EXISTS org_id UUID
    REFERENCES workspaces(id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS org_api_tokens_live_idx ON org_api_tokens(token_hash)
    WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS org_api_tokens_org_id_idx ON org_api_tokens(org_id)
    WHERE org_id IS NOT NULL;
