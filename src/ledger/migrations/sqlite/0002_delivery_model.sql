-- The delivery model (0.2). A ledger written by 0.1 is migrated in place; its rows stay readable.

-- The request's execution context, protobuf-encoded, stored once for all its deliveries. NULL for
-- requests written by 0.1, whose deliveries carry it in their version 1 payload.
ALTER TABLE requests ADD COLUMN execution BLOB;

-- The current lease's token: an outcome is applied only while the token it carries is this one.
ALTER TABLE deliveries ADD COLUMN lease_token INTEGER;

-- Leases handed out, counting those whose worker died mid-send: the attempt number a sender is
-- told. In 0.1 every recorded attempt was one lease.
ALTER TABLE deliveries ADD COLUMN leases INTEGER NOT NULL DEFAULT 0;
UPDATE deliveries SET leases = attempts;
