-- The enricher's bookkeeping, in the outbox's database so that it commits in
-- the same transaction as the events it accounts for. Times are UTC
-- DATETIME(6). See docs/enricher.md.

-- Every audit record the enricher has handled (enriched or quarantined): the
-- table tail and HTTP ingest skip an id found here, so a record re-read in the
-- tail's overlap window or POSTed twice yields its events once. The tail
-- prunes its own rows older than its read window; ingest rows stay.
CREATE TABLE herald_enricher_processed (
  audit_id     VARCHAR(64) NOT NULL PRIMARY KEY,
  source       VARCHAR(64) NOT NULL,
  created_on   DATETIME(6) NOT NULL,
  outcome      VARCHAR(16) NOT NULL,
  processed_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
  CONSTRAINT herald_enricher_processed_outcome CHECK (outcome IN ('enriched', 'quarantined')),
  INDEX herald_enricher_processed_prune (source, created_on)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The table tail's position: it reads audit rows with created_on >= read_from
-- (NULL: from the start); high_water is the latest created_on it processed.
CREATE TABLE herald_enricher_cursor (
  name       VARCHAR(64) NOT NULL PRIMARY KEY,
  read_from  DATETIME(6) NULL,
  high_water DATETIME(6) NULL,
  updated_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Audit records that could not be enriched, with the reason and the record
-- as received, until `herald enrich retry` enriches them.
CREATE TABLE herald_enricher_quarantine (
  id              VARCHAR(64)  NOT NULL PRIMARY KEY,
  audit_id        VARCHAR(255) NOT NULL DEFAULT '',
  action          VARCHAR(255) NOT NULL DEFAULT '',
  source          VARCHAR(64)  NOT NULL,
  kind            VARCHAR(32)  NOT NULL,
  reason          TEXT         NOT NULL,
  record          LONGTEXT     NOT NULL,
  attempts        INT          NOT NULL DEFAULT 1,
  first_seen_at   DATETIME(6)  NOT NULL,
  last_attempt_at DATETIME(6)  NOT NULL,
  INDEX herald_enricher_quarantine_audit (audit_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
