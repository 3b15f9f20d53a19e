-- A batch that has left keeps its key and bytes until its outcome is known (a 201, a 400
-- naming its records, or a receipt lookup). `left_at` is set when SendBatch first takes
-- the batch, in the same write transaction that reads its bytes: before it, an import that
-- changes one of its records withdraws the batch (its records are cut anew); after it,
-- the record's old content stays with the batch in `held_bodies` and its new content
-- waits as a follow-up, sent in a later batch once this one has settled.
ALTER TABLE batches ADD COLUMN left_at BIGINT;

-- Batches of an earlier version that had been sent already count as left.
UPDATE batches SET left_at = COALESCE(in_flight_since, updated_at)
WHERE status IN ('prepared', 'dead') AND (attempts > 0 OR in_flight_since IS NOT NULL);

-- The content a left, unsettled batch carries for a record that changed since it was cut:
-- exactly what the batch was measured with, so every resend under its key has its bytes.
-- The row goes when the batch settles.
CREATE TABLE IF NOT EXISTS held_bodies (
    batch_id  TEXT   NOT NULL REFERENCES batches (batch_id),
    record_id TEXT   NOT NULL,
    sha256    TEXT   NOT NULL,
    bytes     BIGINT NOT NULL,
    body      TEXT   NOT NULL,
    PRIMARY KEY (batch_id, record_id)
);
