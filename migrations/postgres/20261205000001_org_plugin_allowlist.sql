-- The per-org plugin allowlist (reference migration 026): an org (a root workspace) with no
-- rows allows every plugin; with rows, only those.
CREATE TABLE IF NOT EXISTS org_plugin_allowlist (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    plugin_name TEXT NOT NULL,
    enabled_by  TEXT NOT NULL,
    enabled_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (org_id, plugin_name)
);
