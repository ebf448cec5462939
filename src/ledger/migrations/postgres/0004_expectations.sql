-- Launch plans that must succeed every so often (flyteNotify.expectations): when each was first
-- watched, its last success, and whether its alert went out. Shared by the replicas, so that a
-- miss is alerted once. Rows of launch plans no longer in the config stay, unused.
CREATE TABLE expectations (
    launch_plan      TEXT PRIMARY KEY,
    watched_since    BIGINT NOT NULL,
    last_success_at  BIGINT,
    state            TEXT NOT NULL DEFAULT 'ok',
    missed_deadline  BIGINT,
    updated_at       BIGINT NOT NULL
);
