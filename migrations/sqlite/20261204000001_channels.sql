-- Chat channels (SQLite dialect): uuids and times as TEXT written by the application. See the
-- PostgreSQL migration for the `poll_*` lease columns and the chat history table.

CREATE TABLE workspace_channels (
    id               TEXT PRIMARY KEY NOT NULL,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    channel_type     TEXT NOT NULL,
    channel_config   TEXT NOT NULL DEFAULT '{}',
    enabled          INTEGER NOT NULL DEFAULT 1,
    allowed_users    TEXT DEFAULT '[]',
    last_message_at  TEXT,
    message_count    INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    channel_budget   INTEGER DEFAULT NULL,
    poll_holder      TEXT,
    poll_expires_at  TEXT
);
CREATE UNIQUE INDEX idx_channels_workspace_type ON workspace_channels(workspace_id, channel_type);
CREATE INDEX idx_channels_lookup ON workspace_channels(channel_type, enabled) WHERE enabled;

CREATE TABLE channel_chat_history (
    channel_id  TEXT NOT NULL REFERENCES workspace_channels(id) ON DELETE CASCADE,
    chat_id     TEXT NOT NULL,
    entries     TEXT NOT NULL DEFAULT '[]',
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (channel_id, chat_id)
);
