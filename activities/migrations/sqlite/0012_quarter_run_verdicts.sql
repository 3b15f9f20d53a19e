-- A run ends as complete, incomplete, needs_correction or failed; `discrepancies` stays
-- allowed for rows written before. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt. Re-runnable, like every migration here: a second pass copies the new
-- table into a fresh one and renames it back.
CREATE TABLE IF NOT EXISTS quarter_runs_v2 (
    quarter     TEXT    NOT NULL PRIMARY KEY,
    workflow_id TEXT    NOT NULL,
    status      TEXT    NOT NULL
        CHECK (status IN ('running', 'complete', 'incomplete', 'needs_correction', 'failed',
                          'discrepancies')),
    report_path TEXT,
    summary     TEXT,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT
);

INSERT INTO quarter_runs_v2
    (quarter, workflow_id, status, report_path, summary, started_at, finished_at)
SELECT quarter, workflow_id, status, report_path, summary, started_at, finished_at
FROM quarter_runs WHERE true
ON CONFLICT (quarter) DO NOTHING;

DROP TABLE quarter_runs;

ALTER TABLE quarter_runs_v2 RENAME TO quarter_runs;
