-- A page checked while sending went on was trusted at the end only after hashing the
-- store's side of its range again: 14 s for the ~970k records of a 1M quarter, the run's
-- last seconds. Now the store itself marks a page stale the moment a record of its range
-- is inserted, deleted, or leaves a settled state or changes content (triggers below, in
-- the writer's own transaction, whoever the writer is), so the final Reconcile trusts the
-- pages still 'clean' without reading their records.
--
-- A page is 'watching' from before its range is compared until the comparison found it
-- clean; only 'clean' pages are trusted. The table is a cache: pages kept before this
-- migration are dropped (the next Reconcile reads those pages again).
DROP TABLE IF EXISTS reconcile_pages;

CREATE TABLE IF NOT EXISTS reconcile_pages (
    quarter     TEXT    NOT NULL,
    pass        TEXT    NOT NULL,
    page_no     BIGINT  NOT NULL,
    after_id    TEXT    NOT NULL,
    upto_id     TEXT    NOT NULL,
    next_token  TEXT    NOT NULL,
    records     BIGINT  NOT NULL,
    -- SHA-256 of the store's synced (record_id, sha256) pairs of the range when it was
    -- found clean: what the page was compared against, for an audit by hand.
    digest      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('watching', 'clean', 'stale')),
    read_at     BIGINT  NOT NULL,
    PRIMARY KEY (quarter, pass, page_no)
);

-- Sending moves records pending -> batched -> settled; those steps cannot touch a watched
-- range (it had none pending or batched when it was found clean, and records get there
-- again only through the changes below), so the hot path skips the trigger at its WHEN.
CREATE TRIGGER IF NOT EXISTS checked_pages_see_changes AFTER UPDATE ON grades
WHEN OLD.status NOT IN ('pending', 'batched')
 AND (NEW.status IS NOT OLD.status OR NEW.sha256 IS NOT OLD.sha256
      OR NEW.record_id IS NOT OLD.record_id OR NEW.quarter IS NOT OLD.quarter)
BEGIN
    UPDATE reconcile_pages SET state = 'stale'
    WHERE state <> 'stale'
      AND ((quarter = OLD.quarter AND OLD.record_id > after_id AND OLD.record_id <= upto_id)
        OR (quarter = NEW.quarter AND NEW.record_id > after_id AND NEW.record_id <= upto_id));
END;

CREATE TRIGGER IF NOT EXISTS checked_pages_see_inserts AFTER INSERT ON grades
WHEN EXISTS (SELECT 1 FROM reconcile_pages WHERE quarter = NEW.quarter AND state <> 'stale')
BEGIN
    UPDATE reconcile_pages SET state = 'stale'
    WHERE quarter = NEW.quarter AND state <> 'stale'
      AND NEW.record_id > after_id AND NEW.record_id <= upto_id;
END;

CREATE TRIGGER IF NOT EXISTS checked_pages_see_deletes AFTER DELETE ON grades
WHEN EXISTS (SELECT 1 FROM reconcile_pages WHERE quarter = OLD.quarter AND state <> 'stale')
BEGIN
    UPDATE reconcile_pages SET state = 'stale'
    WHERE quarter = OLD.quarter AND state <> 'stale'
      AND OLD.record_id > after_id AND OLD.record_id <= upto_id;
END;
