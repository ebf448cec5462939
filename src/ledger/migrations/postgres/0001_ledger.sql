-- The shared ledger on PostgreSQL: the same model as the SQLite ledger after its three migrations,
-- written by several replicas at once.

-- The ledger's clock, in milliseconds since the Unix epoch like the SQLite store's columns. It is
-- the database's clock, never a replica's: replicas with skewed clocks still agree on due times and
-- lease expiries. now() is the transaction's start, so one transaction has one time throughout.
CREATE FUNCTION ledger_now() RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT floor(extract(epoch FROM now()) * 1000)::bigint $$;

-- One row per Enqueue request: the idempotency key, what it produced, and its execution context
-- (protobuf), stored once for all its deliveries.
CREATE TABLE requests (
    request_id  TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    unmatched   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    execution   BYTEA NOT NULL
);

-- One row per delivery (one notification of one request). seq orders ListPending's pages: it is
-- only ever assigned while holding delivery_commit_order (below), so seq order is commit order.
CREATE TABLE deliveries (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    request_id         TEXT NOT NULL REFERENCES requests (request_id),
    notification_index BIGINT NOT NULL,
    project            TEXT NOT NULL,
    domain             TEXT NOT NULL,
    name               TEXT NOT NULL,
    org                TEXT NOT NULL,
    channel            TEXT NOT NULL,
    phase              INTEGER NOT NULL,
    state              TEXT NOT NULL,
    -- Attempts whose outcome was recorded.
    attempts           BIGINT NOT NULL DEFAULT 0,
    -- Leases handed out, counting those whose replica died mid-send: the attempt number a sender
    -- is told.
    leases             BIGINT NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT,
    lease_until        BIGINT,
    -- The current lease's token: an outcome is applied only while the token it carries is this one.
    lease_token        BIGINT,
    last_error         TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    payload            TEXT NOT NULL
);

-- The workers' question: what is due? (Leased rows stay in it; there are few of them.)
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE state IN ('pending', 'retrying');
-- Leases in flight, to find when one that a dead replica left runs out.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;
-- ListPending's question: what is not delivered nor discarded, oldest first?
CREATE INDEX deliveries_open ON deliveries (seq) WHERE state IN ('pending', 'retrying', 'dead');
CREATE INDEX deliveries_by_request ON deliveries (request_id, notification_index);

-- Every outcome and operator action, as the delivery's history.
CREATE TABLE delivery_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX delivery_events_by_delivery ON delivery_events (delivery_id, seq);

-- Fresh lease tokens: unique across replicas, so a token is never current twice.
CREATE SEQUENCE lease_tokens;

-- Never holds a row. A transaction that inserts deliveries locks it (EXCLUSIVE, until its commit)
-- just before the insert, so that deliveries.seq values are handed out in commit order; see
-- list_pending in postgres.rs for why ListPending needs that.
CREATE TABLE delivery_commit_order ();
