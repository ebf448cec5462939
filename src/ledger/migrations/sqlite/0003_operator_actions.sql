-- Operator actions (0.2): a discarded delivery leaves the pending list and stays in the ledger, and
-- every outcome and action is kept as the delivery's history.

DROP INDEX deliveries_open;
CREATE INDEX deliveries_open ON deliveries (seq) WHERE state IN ('pending', 'retrying', 'dead');

CREATE TABLE delivery_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX delivery_events_by_delivery ON delivery_events (delivery_id, seq);
