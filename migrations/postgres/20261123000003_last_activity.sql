-- When a workspace last did work (a task in progress, an A2A message): the clock of
-- hibernation. Not in the reference schema, which measured idleness from heartbeats.
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS last_activity_at TIMESTAMPTZ;
