-- The grades store: every record of every quarter, the batches they travel in, the batches
-- that failed for good, one row per quarterly run and the shared rate-limit slots.
-- Times are Unix milliseconds (BIGINT) computed by the worker, so no SQL date function is
-- needed and the same DDL can move to PostgreSQL. IF NOT EXISTS lets two workers that race
-- on a fresh database both get through this migration.

CREATE TABLE IF NOT EXISTS batches (
    batch_id     TEXT    NOT NULL PRIMARY KEY,
    quarter      TEXT    NOT NULL,
    school_id    TEXT    NOT NULL,
    records      BIGINT  NOT NULL,
    bytes        BIGINT  NOT NULL,
    status       TEXT    NOT NULL
        CHECK (status IN ('prepared', 'synced', 'rejected', 'dead', 'superseded')),
    attempts     BIGINT  NOT NULL DEFAULT 0,
    last_outcome TEXT,
    receipt_id   TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE INDEX IF NOT EXISTS batches_by_school_status ON batches (quarter, school_id, status);

CREATE TABLE IF NOT EXISTS grades (
    record_id  TEXT    NOT NULL PRIMARY KEY,
    quarter    TEXT    NOT NULL,
    school_id  TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    bytes      BIGINT  NOT NULL,
    status     TEXT    NOT NULL
        CHECK (status IN ('pending', 'batched', 'synced', 'rejected', 'dead')),
    batch_id   TEXT    REFERENCES batches (batch_id),
    reason     TEXT,
    updated_at BIGINT  NOT NULL
);

-- What the batcher walks: the pending records of one school in record_id order.
CREATE INDEX IF NOT EXISTS grades_pending
    ON grades (quarter, school_id, record_id) WHERE status = 'pending';
-- Per-school status counts and the synced-hash listing, without touching the bodies.
CREATE INDEX IF NOT EXISTS grades_by_school_status
    ON grades (quarter, school_id, status, record_id);
CREATE INDEX IF NOT EXISTS grades_by_batch ON grades (batch_id);

CREATE TABLE IF NOT EXISTS dead_letters (
    batch_id    TEXT    NOT NULL PRIMARY KEY REFERENCES batches (batch_id),
    quarter     TEXT    NOT NULL,
    school_id   TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    alerted     INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL,
    replayed_at BIGINT
);

CREATE INDEX IF NOT EXISTS dead_letters_by_quarter ON dead_letters (quarter, replayed_at);

CREATE TABLE IF NOT EXISTS quarter_runs (
    quarter     TEXT    NOT NULL PRIMARY KEY,
    workflow_id TEXT    NOT NULL,
    status      TEXT    NOT NULL
        CHECK (status IN ('running', 'complete', 'discrepancies', 'failed')),
    report_path TEXT,
    summary     TEXT,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT
);

CREATE TABLE IF NOT EXISTS rate_slots (
    name       TEXT    NOT NULL PRIMARY KEY,
    next_at_ms BIGINT  NOT NULL
);
