-- Whether a dead batch can be resent as it is. A batch the API refused with a 400 naming
-- none of its records, or whose records were cut too often, would meet the same answer
-- under the same key (the API keeps its answer per key): a redrive or a replay puts its
-- records back to pending, to be sent in a new batch, instead.
ALTER TABLE dead_letters ADD COLUMN resend INTEGER NOT NULL DEFAULT 1;
