-- Enrollment labels are authoritative: a hello may add labels but never
-- remove or change one given at enrollment. enrollment_labels keeps them;
-- labels is enrollment_labels merged over the last hello's labels.
-- Agents enrolled before this migration keep the labels they have now as
-- their enrollment labels (an earlier hello may already have replaced the
-- original ones; keeping the current ones drops nothing).

ALTER TABLE agents ADD COLUMN enrollment_labels TEXT NOT NULL DEFAULT '{}'; -- JSON object
UPDATE agents SET enrollment_labels = labels;
