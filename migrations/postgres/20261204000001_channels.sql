-- Chat channels (the reference's migrations 016 and 024), idempotent so a reference database
-- is adopted in place. Sensitive config values are stored as `ec1:` ciphertext (see the store's
-- `channels`). The `poll_*` columns are ours: a replica holds a lease on a polling channel
-- (Telegram long polling) so that several replicas on one database run one poller per channel.
-- `channel_chat_history` replaces the reference's Redis history lists, keyed by channel and chat.

CREATE TABLE IF NOT EXISTS workspace_channels (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    channel_type     TEXT NOT NULL,
    channel_config   JSONB NOT NULL DEFAULT '{}',
    enabled          BOOLEAN NOT NULL DEFAULT true,
    allowed_users    JSONB DEFAULT '[]',
    last_message_at  TIMESTAMPTZ,
    message_count    INTEGER NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE workspace_channels ADD COLUMN IF NOT EXISTS channel_budget INTEGER DEFAULT NULL;
ALTER TABLE workspace_channels ADD COLUMN IF NOT EXISTS poll_holder TEXT;
ALTER TABLE workspace_channels ADD COLUMN IF NOT EXISTS poll_expires_at TIMESTAMPTZ;

CREATE UNIQUE INDEX IF NOT EXISTS idx_channels_workspace_type
    ON workspace_channels(workspace_id, channel_type);
CREATE INDEX IF NOT EXISTS idx_channels_lookup
    ON workspace_channels(channel_type, enabled) WHERE enabled;

CREATE TABLE IF NOT EXISTS channel_chat_history (
    channel_id  UUID NOT NULL REFERENCES workspace_channels(id) ON DELETE CASCADE,
    chat_id     TEXT NOT NULL,
    entries     JSONB NOT NULL DEFAULT '[]',
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, chat_id)
);
