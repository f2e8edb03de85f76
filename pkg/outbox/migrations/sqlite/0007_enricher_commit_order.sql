-- The table tail no longer passes over a record it cannot place (see
-- docs/enricher.md, "The table tail"). created_on is NULL for a record that
-- had none: it is quarantined, and its id must never be pruned by time.
-- SQLite cannot drop a NOT NULL constraint, so the table is rebuilt.
CREATE TABLE herald_enricher_processed_0007 (
  audit_id     TEXT NOT NULL PRIMARY KEY,
  source       TEXT NOT NULL,
  created_on   TEXT,
  xid          INTEGER,
  outcome      TEXT NOT NULL CHECK (outcome IN ('enriched', 'quarantined')),
  processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO herald_enricher_processed_0007 (audit_id, source, created_on, outcome, processed_at)
  SELECT audit_id, source, created_on, outcome, processed_at FROM herald_enricher_processed;
DROP TABLE herald_enricher_processed;
ALTER TABLE herald_enricher_processed_0007 RENAME TO herald_enricher_processed;
CREATE INDEX herald_enricher_processed_prune ON herald_enricher_processed (source, created_on);

-- When the portal is PostgreSQL, the tail sweeps its audit table by the id of
-- the transaction that wrote each row: read_xid is where the sweep starts
-- (every transaction before it had ended when it was set), xid (above) the
-- writing transaction of a record the tail handled, kept while a sweep may
-- read it.
ALTER TABLE herald_enricher_cursor ADD COLUMN read_xid INTEGER;

-- Processed ids are kept for a retention period after they were handled, so
-- that `herald enrich verify` can account for every audit row of that period.
CREATE INDEX herald_enricher_processed_retention ON herald_enricher_processed (source, processed_at);
