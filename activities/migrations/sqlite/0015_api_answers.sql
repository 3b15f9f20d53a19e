-- How the API answered SendBatch, per quarter, minute and status class, for the HTML
-- report's "answers per minute" plot. One row per minute and class (an upsert adds to it),
-- not one per request, so a quarter of a million records keeps a few thousand rows.
CREATE TABLE IF NOT EXISTS api_answers (
    quarter   TEXT    NOT NULL,
    minute_ms BIGINT  NOT NULL,
    class     TEXT    NOT NULL,
    answers   BIGINT  NOT NULL,
    PRIMARY KEY (quarter, minute_ms, class)
);
