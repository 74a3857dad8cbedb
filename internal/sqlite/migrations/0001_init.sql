-- Initial schema. Times are INTEGER unix nanoseconds UTC; NULL is the zero
-- time. JSON columns hold TEXT.

CREATE TABLE agents (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL DEFAULT '',
	hostname    TEXT NOT NULL DEFAULT '',
	os          TEXT NOT NULL DEFAULT '',
	arch        TEXT NOT NULL DEFAULT '',
	version     TEXT NOT NULL DEFAULT '',
	labels      TEXT NOT NULL DEFAULT '{}', -- JSON object
	allowed     TEXT NOT NULL DEFAULT '[]', -- JSON array
	first_seen  INTEGER,
	last_seen   INTEGER,
	last_addr   TEXT NOT NULL DEFAULT '',
	secret_hash BLOB NOT NULL,
	revoked     INTEGER NOT NULL DEFAULT 0,
	revoked_at  INTEGER,
	-- search is id, name and hostname lower-cased by Go (Unicode-aware,
	-- unlike SQLite's lower()), joined by newlines, for AgentFilter.Text.
	search      TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX agents_first_seen ON agents (first_seen, id);

CREATE TABLE enrollment_tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL DEFAULT '',
	hash       BLOB NOT NULL UNIQUE,
	expires_at INTEGER,
	uses_left  INTEGER NOT NULL,
	created_at INTEGER,
	created_by TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE commands (
	id            TEXT PRIMARY KEY,
	client_id     TEXT NOT NULL,
	command       TEXT NOT NULL,
	args          TEXT NOT NULL DEFAULT '[]', -- JSON array
	timeout_ms    INTEGER NOT NULL DEFAULT 0,
	status        TEXT NOT NULL CHECK (status IN (
		'queued', 'pending', 'dispatched', 'running',
		'completed', 'failed', 'cancelled', 'timed_out', 'expired')),
	requested_by  TEXT NOT NULL DEFAULT '',
	batch_id      TEXT NOT NULL DEFAULT '',
	expires_at    INTEGER,
	created_at    INTEGER,
	dispatched_at INTEGER,
	finished_at   INTEGER,
	attempts      INTEGER NOT NULL DEFAULT 0,
	exit_code     INTEGER,
	stdout        TEXT NOT NULL DEFAULT '',
	stderr        TEXT NOT NULL DEFAULT '',
	truncated     INTEGER NOT NULL DEFAULT 0,
	error         TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX commands_client_created ON commands (client_id, created_at);
CREATE INDEX commands_created ON commands (created_at);
CREATE INDEX commands_status ON commands (status);
CREATE INDEX commands_batch ON commands (batch_id);

CREATE TABLE audit (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	time   INTEGER,
	actor  TEXT NOT NULL DEFAULT '',
	role   TEXT NOT NULL DEFAULT '',
	source TEXT NOT NULL DEFAULT '',
	action TEXT NOT NULL DEFAULT '',
	target TEXT NOT NULL DEFAULT '',
	result TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX audit_time ON audit (time);
