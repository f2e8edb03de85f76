-- Relay engine v2 (docs/outbox.md, "How relays deliver"). Relays lease
-- buckets of partition keys instead of rows: a row's bucket is a hash of its
-- key, so one key's events always share a bucket, and the one relay leasing a
-- bucket reads it in seq order without locking rows and deletes what the
-- broker acknowledged: one write per event, no head-finding query.
--
-- Computed by the database, so rows inserted with plain SQL get it too.
-- hashtext is immutable; & 63 keeps it in 0..63 for negative hashes too.
ALTER TABLE herald_outbox
  ADD COLUMN bucket SMALLINT GENERATED ALWAYS AS ((hashtext(partition_key) & 63)::smallint) STORED;

-- One row per destination and bucket, created by the first relay of a
-- destination. owner is NULL while no relay holds the bucket.
CREATE TABLE herald_outbox_buckets (
  destination TEXT        NOT NULL,
  bucket      SMALLINT    NOT NULL,
  owner       TEXT,
  expires_at  TIMESTAMPTZ,
  PRIMARY KEY (destination, bucket)
);

-- The relays of each destination, each renewing its row while it runs, so
-- that each can take its fair share of the buckets.
CREATE TABLE herald_outbox_relays (
  destination TEXT        NOT NULL,
  name        TEXT        NOT NULL,
  expires_at  TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (destination, name)
);

-- The doorbell rings only while a relay waits. A relay that has found
-- nothing to do for a while writes its row here with an expiry; a draining
-- relay needs no doorbell and has none. NOTIFY takes a lock that serialises
-- every committing transaction that called it, so ringing on every insert
-- halved the writers' own commit rate (docs/benchmarks.md); this check costs
-- an index probe of a table of a few rows. The payload names the table's
-- schema, so that one database can serve several outboxes.
CREATE TABLE herald_outbox_waiters (
  name       TEXT        PRIMARY KEY,
  expires_at TIMESTAMPTZ NOT NULL
);

CREATE OR REPLACE FUNCTION herald_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM herald_outbox_waiters WHERE expires_at > now()) THEN
    PERFORM pg_notify('herald_outbox', TG_TABLE_SCHEMA);
  END IF;
  RETURN NULL;
END
$$;

-- Routing at relay time: writers write one row per event, for 'main'; the
-- relay of 'main' copies it for every destination the route table names
-- (config destinations, stored webhook endpoints) and marks it routed,
-- before and whatever it publishes, so no destination's outage holds back
-- another's. Rows written before this migration were routed by their
-- writers.
ALTER TABLE herald_outbox ADD COLUMN routed BOOLEAN NOT NULL DEFAULT false;

UPDATE herald_outbox SET routed = true;

CREATE INDEX herald_outbox_unrouted ON herald_outbox (destination, seq) WHERE state = 'pending' AND NOT routed;
