-- Grouping into digests (0.4). A member of a group is an ordinary delivery in state 'grouped'
-- with its group's key and the digest it joined; the digest is an ordinary delivery too (with
-- group_key, digest_members and, while it takes members, digest_open = 1), leased, retried and
-- recorded like any other, and its members follow it when it is delivered, silenced or discarded.

ALTER TABLE deliveries ADD COLUMN group_key TEXT;
ALTER TABLE deliveries ADD COLUMN digest_id TEXT;
ALTER TABLE deliveries ADD COLUMN digest_open INTEGER;
ALTER TABLE deliveries ADD COLUMN digest_members INTEGER;

-- At most one open digest per group: a member joins it or, when there is none, opens one.
CREATE UNIQUE INDEX deliveries_open_digest ON deliveries (group_key) WHERE digest_open = 1;
-- A digest's members, for its lease and its outcome.
CREATE INDEX deliveries_by_digest ON deliveries (digest_id, seq) WHERE digest_id IS NOT NULL;
-- A group's latest digest, for groupInterval.
CREATE INDEX deliveries_digests ON deliveries (group_key, created_at) WHERE digest_members IS NOT NULL;

-- ListPending shows members waiting in their group beside the rest.
DROP INDEX deliveries_open;
CREATE INDEX deliveries_open ON deliveries (seq) WHERE state IN ('pending', 'retrying', 'dead', 'grouped');
