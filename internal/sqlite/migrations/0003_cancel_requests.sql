-- Durable cancel requests: an operator's cancel of a delivered command is
-- kept until the agent confirms it, across restarts.

ALTER TABLE commands ADD COLUMN cancel_requested_at INTEGER;
ALTER TABLE commands ADD COLUMN cancel_requested_by TEXT NOT NULL DEFAULT '';
