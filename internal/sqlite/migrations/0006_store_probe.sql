-- store_probe is written by Store.Probe to learn whether the disk takes
-- writes (readiness): row 1 is rewritten while the store is healthy, the
-- cheapest real write; row 2 gets a fresh pad of 64 KiB while it is
-- failing, so that only real free space counts as a recovery.

CREATE TABLE store_probe (
	id  INTEGER PRIMARY KEY CHECK (id IN (1, 2)),
	at  INTEGER NOT NULL DEFAULT 0,
	pad BLOB NOT NULL DEFAULT x''
) STRICT;

INSERT INTO store_probe (id) VALUES (1), (2);
