-- How many batches a record has been cut into. A record the API never names but keeps
-- refusing alongside others is requeued and re-batched each time; once it has been cut
-- into the caller's limit it is dead-lettered instead, so a run cannot loop forever.
ALTER TABLE grades ADD COLUMN cuts INTEGER NOT NULL DEFAULT 0;

-- Records in a batch (prepared or dead) right now were cut at least once.
UPDATE grades SET cuts = 1 WHERE status IN ('batched', 'dead');
