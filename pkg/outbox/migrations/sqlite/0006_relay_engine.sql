-- Relay engine v2 (docs/outbox.md, "How relays deliver"). Relays lease
-- buckets of partition keys instead of rows. SQLite has one writer, so Herald
-- runs one relay on it and every row shares bucket 0: the relay holding it
-- reads the outbox in seq order without locking rows and deletes what the
-- broker acknowledged.
ALTER TABLE herald_outbox ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0;

CREATE TABLE herald_outbox_buckets (
  destination TEXT    NOT NULL,
  bucket      INTEGER NOT NULL,
  owner       TEXT,
  expires_at  TEXT,
  PRIMARY KEY (destination, bucket)
);

CREATE TABLE herald_outbox_relays (
  destination TEXT NOT NULL,
  name        TEXT NOT NULL,
  expires_at  TEXT NOT NULL,
  PRIMARY KEY (destination, name)
);

-- Routing at relay time: writers write one row per event, for 'main'; the
-- relay of 'main' copies it for every destination the route table names
-- and marks it routed, before and whatever it publishes. Rows written
-- before this migration were routed by their writers.
ALTER TABLE herald_outbox ADD COLUMN routed INTEGER NOT NULL DEFAULT 0;

UPDATE herald_outbox SET routed = 1;

CREATE INDEX herald_outbox_unrouted ON herald_outbox (destination, seq) WHERE state = 'pending' AND routed = 0;
