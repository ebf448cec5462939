-- ListPending pages in the order of the accepting transactions' ids (accept_xid, then seq), and
-- only below the oldest accept still in flight (see list_pending in postgres.rs). Until now it
-- paged by seq, which was only commit order because every accept took delivery_commit_order in
-- EXCLUSIVE mode in turn; accepts now take it in ROW EXCLUSIVE mode and run side by side.
--
-- Rows written before this migration have no id recorded. The constant '1' (stored once, no table
-- rewrite) sorts them ahead of every new row, among themselves by seq, which was their commit
-- order; the default for new rows is then the inserting transaction's own id.
ALTER TABLE deliveries ADD COLUMN accept_xid xid8 NOT NULL DEFAULT '1';
ALTER TABLE deliveries ALTER COLUMN accept_xid SET DEFAULT pg_current_xact_id();

-- The same conditions as before, keyed by ListPending's new order.
DROP INDEX deliveries_open;
CREATE INDEX deliveries_open ON deliveries (accept_xid, seq)
    WHERE state IN ('pending', 'retrying', 'dead', 'grouped');
DROP INDEX deliveries_silenced_seq;
CREATE INDEX deliveries_silenced_by_accept ON deliveries (accept_xid, seq) WHERE state = 'silenced';
