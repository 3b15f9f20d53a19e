-- Reconcile's reports live in the database, so any host can show or export them: a report
-- file written on the worker that happened to run Reconcile is out of reach of the
-- others. One row per report (a run that repairs discrepancies writes several); `stamp`
-- is the report's name, as in the optional report files.
CREATE TABLE IF NOT EXISTS reports (
    quarter      TEXT    NOT NULL,
    stamp        TEXT    NOT NULL,
    workflow_id  TEXT    NOT NULL,
    verdict      TEXT    NOT NULL,
    generated_at BIGINT  NOT NULL,
    json         TEXT    NOT NULL,
    csv          TEXT    NOT NULL,
    PRIMARY KEY (quarter, stamp)
);
