-- Grouping into digests: as the SQLite ledger's 0005. A member is an ordinary delivery in state
-- 'grouped' with its group's key and the digest it joined; the digest is an ordinary delivery
-- (with group_key, digest_members and, while it takes members, digest_open), leased, retried and
-- recorded like any other. Replicas agree on one open digest per group through the unique index:
-- a member's upsert either joins it (holding its row lock until commit, so that no lease of the
-- digest can read its members meanwhile) or opens one.

ALTER TABLE deliveries ADD COLUMN group_key TEXT;
ALTER TABLE deliveries ADD COLUMN digest_id TEXT;
ALTER TABLE deliveries ADD COLUMN digest_open BOOLEAN;
ALTER TABLE deliveries ADD COLUMN digest_members BIGINT;

CREATE UNIQUE INDEX deliveries_open_digest ON deliveries (group_key) WHERE digest_open;
CREATE INDEX deliveries_by_digest ON deliveries (digest_id, seq) WHERE digest_id IS NOT NULL;
CREATE INDEX deliveries_digests ON deliveries (group_key, created_at) WHERE digest_members IS NOT NULL;

DROP INDEX deliveries_open;
CREATE INDEX deliveries_open ON deliveries (seq) WHERE state IN ('pending', 'retrying', 'dead', 'grouped');
