-- SQLite checks every partial index's condition on each insert and update of a delivery, and it
-- codes an IN list of three or more values as a temporary b-tree built afresh on every run of
-- the statement. With these two conditions as IN lists, each Enqueue built about a dozen such
-- b-trees (callgrind: 11.7 per Enqueue, and 9.6 % of the server's instructions zeroing their
-- pages). The same conditions as ORs are checked in place. Statements that use these indexes
-- name their conditions term for term (OPEN and ARMED in sqlite.rs), as SQLite requires.
DROP INDEX deliveries_open;
CREATE INDEX deliveries_open ON deliveries (seq)
    WHERE (state = 'pending' OR state = 'retrying' OR state = 'dead' OR state = 'grouped');
DROP INDEX deliveries_armed;
CREATE INDEX deliveries_armed ON deliveries (project, domain, name, org)
    WHERE (phase = 1 OR phase = 2 OR phase = 3 OR phase = 5 OR phase = 9)
      AND state IN ('pending', 'silenced') AND attempts = 0;
