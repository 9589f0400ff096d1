-- The per-org plugin allowlist (SQLite dialect): uuids and times as TEXT written by the
-- application. An org with no rows allows every plugin.
CREATE TABLE org_plugin_allowlist (
    id          TEXT PRIMARY KEY NOT NULL,
    org_id      TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    plugin_name TEXT NOT NULL,
    enabled_by  TEXT NOT NULL,
    enabled_at  TEXT NOT NULL,
    UNIQUE (org_id, plugin_name)
);
