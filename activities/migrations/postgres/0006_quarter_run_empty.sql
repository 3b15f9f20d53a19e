-- A run may also end `empty`: the quarter held no record anywhere.
ALTER TABLE quarter_runs DROP CONSTRAINT IF EXISTS quarter_runs_status_check;
ALTER TABLE quarter_runs ADD CONSTRAINT quarter_runs_status_check
    CHECK (status IN ('running', 'complete', 'incomplete', 'needs_correction', 'empty',
                      'failed', 'discrepancies'));
