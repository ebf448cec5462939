-- The deadline alerts still armed (pending or silenced, never tried), by execution: what an
-- Enqueue of a terminal phase disarms (disarm_deadlines). Without it that statement scanned every
-- delivery the ledger held, on every such Enqueue: the bench's pace run saw accepts fall from
-- 3,100/s to 270/s as the ledger grew to 29,000 rows. Its condition is the statement's own, term
-- for term, which is what SQLite needs to use a partial index; only armed deadlines are in it.
CREATE INDEX deliveries_armed ON deliveries (project, domain, name, org)
    WHERE phase IN (1, 2, 3, 5, 9) AND state IN ('pending', 'silenced') AND attempts = 0;
