-- The enricher's bookkeeping, in the outbox's database so that it commits in
-- the same transaction as the events it accounts for. See docs/enricher.md.

-- Every audit record the enricher has handled (enriched or quarantined): the
-- table tail and HTTP ingest skip an id found here, so a record re-read in the
-- tail's overlap window or POSTed twice yields its events once. The tail
-- prunes its own rows older than its read window; ingest rows stay.
CREATE TABLE herald_enricher_processed (
  audit_id     TEXT        PRIMARY KEY,
  source       TEXT        NOT NULL,
  created_on   TIMESTAMPTZ NOT NULL,
  outcome      TEXT        NOT NULL CHECK (outcome IN ('enriched', 'quarantined')),
  processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX herald_enricher_processed_prune ON herald_enricher_processed (source, created_on);

-- The table tail's position: it reads audit rows with created_on >= read_from
-- (NULL: from the start); high_water is the latest created_on it processed.
CREATE TABLE herald_enricher_cursor (
  name       TEXT        PRIMARY KEY,
  read_from  TIMESTAMPTZ,
  high_water TIMESTAMPTZ,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Audit records that could not be enriched, with the reason and the record
-- as received, until `herald enrich retry` enriches them.
CREATE TABLE herald_enricher_quarantine (
  id              TEXT        PRIMARY KEY,
  audit_id        TEXT        NOT NULL DEFAULT '',
  action          TEXT        NOT NULL DEFAULT '',
  source          TEXT        NOT NULL,
  kind            TEXT        NOT NULL,
  reason          TEXT        NOT NULL,
  record          TEXT        NOT NULL,
  attempts        INTEGER     NOT NULL DEFAULT 1,
  first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX herald_enricher_quarantine_audit ON herald_enricher_quarantine (audit_id);
