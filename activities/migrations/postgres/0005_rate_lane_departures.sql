-- A rate lane's next start is cut from when its last request really left, not from when
-- it was let go: a request can leave late (a fresh TCP+TLS connection, a loaded host).
-- `start_ms` names the lane's last start; `departs_by_ms`, while set, says its request has
-- not yet told when it left and leaves by then or never: the lane's next claim waits for
-- the report or for that time, whichever comes first.
ALTER TABLE rate_lanes ADD COLUMN IF NOT EXISTS start_ms BIGINT;
ALTER TABLE rate_lanes ADD COLUMN IF NOT EXISTS departs_by_ms BIGINT;
