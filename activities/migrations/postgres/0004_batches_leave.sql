-- A batch that has left keeps its key and bytes until its outcome is known: see SQLite's
-- migration 0016 for the whole story.
ALTER TABLE batches ADD COLUMN left_at BIGINT;

UPDATE batches SET left_at = COALESCE(in_flight_since, updated_at)
WHERE status IN ('prepared', 'dead') AND (attempts > 0 OR in_flight_since IS NOT NULL);

CREATE TABLE held_bodies (
    batch_id  TEXT COLLATE "C" NOT NULL REFERENCES batches (batch_id),
    record_id TEXT COLLATE "C" NOT NULL,
    sha256    TEXT   NOT NULL,
    bytes     BIGINT NOT NULL,
    body      TEXT   NOT NULL,
    PRIMARY KEY (batch_id, record_id)
);
