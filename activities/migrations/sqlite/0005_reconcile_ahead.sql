-- Reconciling while sending goes on. A page of the API's listing can be compared once no
-- record in its range can still change: none pending, none in a batch the API has not
-- answered. This index finds the lowest such record at once.
CREATE INDEX IF NOT EXISTS grades_unsettled
    ON grades (quarter, record_id) WHERE status IN ('pending', 'batched');

-- Pages of the API's listing read and found clean while sending went on, per pass. The
-- final Reconcile trusts a page while the store's synced records of its range still hash
-- to `digest`, and goes on from its `next_token` instead of reading it again. A pass is
-- one sync of the quarter (workflow id and first start), so a later sync reads anew.
CREATE TABLE IF NOT EXISTS reconcile_pages (
    quarter     TEXT    NOT NULL,
    pass        TEXT    NOT NULL,
    page_no     BIGINT  NOT NULL,
    after_id    TEXT    NOT NULL,
    upto_id     TEXT    NOT NULL,
    next_token  TEXT    NOT NULL,
    records     BIGINT  NOT NULL,
    digest      TEXT    NOT NULL,
    read_at     BIGINT  NOT NULL,
    PRIMARY KEY (quarter, pass, page_no)
);
