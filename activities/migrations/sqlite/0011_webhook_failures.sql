-- A webhook POST that failed after its bounded retries is recorded here instead of being
-- retried forever: the run goes on, and the report and the operator can see what was not
-- delivered.
CREATE TABLE IF NOT EXISTS webhook_failures (
    id         INTEGER PRIMARY KEY,
    quarter    TEXT    NOT NULL,
    hook       TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS webhook_failures_by_quarter ON webhook_failures (quarter, created_at);
