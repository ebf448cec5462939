-- The console's chart counts outcomes per hour over the last hours (Ledger::activity); without
-- this it would read every event ever kept.
CREATE INDEX delivery_events_by_time ON delivery_events (at);
