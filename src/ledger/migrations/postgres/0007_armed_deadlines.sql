-- The deadline alerts still armed (pending or silenced, never tried), by execution: what an
-- Enqueue of a terminal phase disarms (disarm_deadlines). Without it that statement read every
-- delivery the ledger held, on every such batch of Enqueues. Only armed deadlines are in it.
CREATE INDEX deliveries_armed ON deliveries (project, domain, name, org)
    WHERE phase IN (1, 2, 3, 5, 9) AND state IN ('pending', 'silenced') AND attempts = 0;
