-- Record bodies (up to ~1 MB each, typically KBs) move out of `grades` into their own table.
-- In `grades` a body spilled into overflow pages, and cutting a batch (status, batch_id)
-- rewrote every one of them: preparing a 1M-record quarter took 71 s. Without bodies a
-- grade row is ~200 bytes and the bodies are read only to build a request.
CREATE TABLE IF NOT EXISTS grade_bodies (
    record_id TEXT NOT NULL PRIMARY KEY REFERENCES grades (record_id),
    body      TEXT NOT NULL
);

INSERT INTO grade_bodies (record_id, body) SELECT record_id, body FROM grades;

ALTER TABLE grades DROP COLUMN body;
