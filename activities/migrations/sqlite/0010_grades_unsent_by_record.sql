-- The compliance report lists every rejected or dead record of a quarter, page by page in
-- record_id order. `grades_unsent` (0007) is keyed by status, so a page would sort all of
-- them; this index hands out a page in order from the seek.
CREATE INDEX IF NOT EXISTS grades_unsent_by_record
    ON grades (quarter, record_id) WHERE status IN ('rejected', 'dead');
