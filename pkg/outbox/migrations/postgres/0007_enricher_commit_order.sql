-- The table tail follows the portal's commit order, not its clock (see
-- docs/enricher.md, "The table tail"). On PostgreSQL it sweeps the audit table
-- by the id of the transaction that wrote each row.

-- read_xid: the sweep reads audit rows written by transactions with an id at
-- or after it; every transaction before it had ended when it was set.
ALTER TABLE herald_enricher_cursor ADD COLUMN read_xid BIGINT;

-- xid: the writing transaction of a record the tail handled, so that the ids
-- a sweep may read again are kept. created_on is NULL for a record that had
-- none (it is quarantined, and its id must never be pruned by time).
ALTER TABLE herald_enricher_processed ADD COLUMN xid BIGINT;
ALTER TABLE herald_enricher_processed ALTER COLUMN created_on DROP NOT NULL;

-- Processed ids are kept for a retention period after they were handled, so
-- that `herald enrich verify` can account for every audit row of that period.
CREATE INDEX herald_enricher_processed_retention ON herald_enricher_processed (source, processed_at);
