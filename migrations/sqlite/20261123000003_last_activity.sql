-- When a workspace last did work (a task in progress, an A2A message): the clock of hibernation.
ALTER TABLE workspaces ADD COLUMN last_activity_at TEXT;
