-- Operator API tokens (hashed), with a role.

CREATE TABLE operator_tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL DEFAULT '',
	role       TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
	hash       BLOB NOT NULL UNIQUE,
	created_at INTEGER,
	created_by TEXT NOT NULL DEFAULT '',
	expires_at INTEGER,
	revoked_at INTEGER
) STRICT;
