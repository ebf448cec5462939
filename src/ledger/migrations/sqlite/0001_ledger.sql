-- One row per Enqueue request: the idempotency key and what it produced.
CREATE TABLE requests (
    request_id  TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL,
    unmatched   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- One row per delivery (one notification of one request). seq orders pages and never repeats.
CREATE TABLE deliveries (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    request_id         TEXT NOT NULL REFERENCES requests (request_id),
    notification_index INTEGER NOT NULL,
    project            TEXT NOT NULL,
    domain             TEXT NOT NULL,
    name               TEXT NOT NULL,
    org                TEXT NOT NULL,
    channel            TEXT NOT NULL,
    phase              INTEGER NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    INTEGER,
    lease_until        INTEGER,
    last_error         TEXT NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    payload            TEXT NOT NULL
);

-- The worker's question: what is due?
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('pending', 'retrying');
-- ListPending's question: what is not delivered, oldest first?
CREATE INDEX deliveries_open ON deliveries (seq) WHERE state <> 'delivered';
CREATE INDEX deliveries_by_request ON deliveries (request_id, notification_index);
