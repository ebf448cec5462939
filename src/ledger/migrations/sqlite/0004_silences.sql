-- Silences (0.3): an operator's matcher and time window. A delivery a silence matched when it was
-- due is 'silenced' with that silence's id; `settled` marks a silence whose end has been handled
-- (with deliver_after, its held deliveries made pending again), so that happens once.

CREATE TABLE silences (
    id            TEXT PRIMARY KEY,
    matcher       TEXT NOT NULL,
    starts_at     INTEGER NOT NULL,
    ends_at       INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    comment       TEXT NOT NULL,
    deliver_after INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    settled       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX silences_by_end ON silences (ends_at);

ALTER TABLE deliveries ADD COLUMN silence_id TEXT;
-- Settling a silence's end finds what it held; ListPending's eq(state,silenced) pages by seq.
-- Both are partial, so the deliveries that are never silenced do not pay for them.
CREATE INDEX deliveries_silenced ON deliveries (silence_id) WHERE state = 'silenced';
CREATE INDEX deliveries_silenced_seq ON deliveries (seq) WHERE state = 'silenced';
