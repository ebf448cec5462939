-- Launch plans that must succeed every so often (flyteNotify.expectations): when each was first
-- watched, its last success, and whether its alert went out. Rows of launch plans no longer in
-- the config stay, unused, so that watching one again resumes where it was.
CREATE TABLE expectations (
    launch_plan      TEXT PRIMARY KEY,
    watched_since    INTEGER NOT NULL,
    last_success_at  INTEGER,
    state            TEXT NOT NULL DEFAULT 'ok',
    missed_deadline  INTEGER,
    updated_at       INTEGER NOT NULL
);
