-- Reconcile reports how many records were rejected or dead-lettered; counting them from
-- the per-school index read the whole quarter (3.4 s at 1M, at the end of the run). Few
-- records ever reach these states, so this index is small and rarely written.
CREATE INDEX IF NOT EXISTS grades_unsent
    ON grades (quarter, status) WHERE status IN ('rejected', 'dead');
