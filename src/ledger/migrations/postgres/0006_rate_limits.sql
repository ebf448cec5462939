-- Rate limits shared by every replica (channels::rate_limit::postgres): one row per destination
-- key (a Slack channel, a PagerDuty routing key, a webhook URL's hash; never a secret), holding
-- GCRA's theoretical arrival time on the ledger's clock. A send reserves its slot by moving `tat`
-- on in one statement, so replicas queue up on the row lock rather than each sending at the full
-- rate. A row whose tat has passed means a full bucket, exactly as no row does, so rows idle for a
-- while are deleted at any time without changing anything.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
