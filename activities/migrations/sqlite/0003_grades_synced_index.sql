-- Reconcile walks the quarter's synced records in record_id order, page by page beside the
-- API's listing; this covering index serves it without reading any record body.
CREATE INDEX IF NOT EXISTS grades_synced
    ON grades (quarter, record_id, school_id, sha256) WHERE status = 'synced';
