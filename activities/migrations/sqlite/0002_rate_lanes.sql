-- The rate gate keeps `capacity` lanes per limit instead of one spacing slot: each lane
-- holds one request per window, so `capacity` requests may start together and the window
-- is used in full (2 per 1.015 s instead of 1 per 0.515 s).
DROP TABLE IF EXISTS rate_slots;

CREATE TABLE IF NOT EXISTS rate_lanes (
    name       TEXT    NOT NULL,
    lane       INTEGER NOT NULL,
    free_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (name, lane)
);
