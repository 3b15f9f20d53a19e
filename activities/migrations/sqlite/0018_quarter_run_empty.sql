-- A run may also end `empty`: the quarter held no record anywhere. SQLite cannot change a
-- CHECK constraint in place, so the table is rebuilt, as in 0012.
CREATE TABLE IF NOT EXISTS quarter_runs_v3 (
    quarter     TEXT    NOT NULL PRIMARY KEY,
    workflow_id TEXT    NOT NULL,
    status      TEXT    NOT NULL
        CHECK (status IN ('running', 'complete', 'incomplete', 'needs_correction', 'empty',
                          'failed', 'discrepancies')),
    report_path TEXT,
    summary     TEXT,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT
);

INSERT INTO quarter_runs_v3
    (quarter, workflow_id, status, report_path, summary, started_at, finished_at)
SELECT quarter, workflow_id, status, report_path, summary, started_at, finished_at
FROM quarter_runs WHERE true
ON CONFLICT (quarter) DO NOTHING;

DROP TABLE quarter_runs;

ALTER TABLE quarter_runs_v3 RENAME TO quarter_runs;
