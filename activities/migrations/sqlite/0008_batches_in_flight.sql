-- When a batch's POST is on its way: set as SendBatch takes the batch, cleared with the
-- attempt's outcome. Once every unsettled record of a quarter is in flight, nothing more
-- will be sent for it, and ReconcileAhead reads the listing's last page during the last
-- answers' latency instead of one round trip after them (the proof read still compares
-- only once every record has settled). A worker that dies mid-send leaves the mark set:
-- the early read then misses records, and the page is read again at the end.
ALTER TABLE batches ADD COLUMN in_flight_since BIGINT;
