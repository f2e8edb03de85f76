-- The table tail no longer passes over a record it cannot place (see
-- docs/enricher.md, "The table tail"). created_on is NULL for a record that
-- had none: it is quarantined, and its id must never be pruned by time.
ALTER TABLE herald_enricher_processed MODIFY created_on DATETIME(6) NULL;

-- When the portal is PostgreSQL, the tail sweeps its audit table by the id of
-- the transaction that wrote each row: read_xid is where the sweep starts
-- (every transaction before it had ended when it was set), xid the writing
-- transaction of a record the tail handled, kept while a sweep may read it.
ALTER TABLE herald_enricher_cursor ADD COLUMN read_xid BIGINT NULL;
ALTER TABLE herald_enricher_processed ADD COLUMN xid BIGINT NULL;

-- Processed ids are kept for a retention period after they were handled, so
-- that `herald enrich verify` can account for every audit row of that period.
CREATE INDEX herald_enricher_processed_retention ON herald_enricher_processed (source, processed_at);
