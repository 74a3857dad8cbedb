-- agent_labels holds agents.labels one row per label, indexed, so that a
-- label selector of any allowed size is a few index lookups instead of
-- one JSON scan of every agent per entry. Triggers keep it equal to
-- agents.labels; the labels of agents stored before this migration are
-- copied in.

CREATE TABLE agent_labels (
	agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
	key      TEXT NOT NULL,
	value    TEXT NOT NULL,
	PRIMARY KEY (agent_id, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX agent_labels_key_value ON agent_labels (key, value, agent_id);

INSERT INTO agent_labels (agent_id, key, value)
	SELECT agents.id, l.key, l.value FROM agents, json_each(agents.labels) AS l;

CREATE TRIGGER agent_labels_insert AFTER INSERT ON agents
BEGIN
	INSERT INTO agent_labels (agent_id, key, value)
		SELECT NEW.id, key, value FROM json_each(NEW.labels);
END;

CREATE TRIGGER agent_labels_update AFTER UPDATE OF labels ON agents
	WHEN NEW.labels IS NOT OLD.labels
BEGIN
	DELETE FROM agent_labels WHERE agent_id = NEW.id;
	INSERT INTO agent_labels (agent_id, key, value)
		SELECT NEW.id, key, value FROM json_each(NEW.labels);
END;
