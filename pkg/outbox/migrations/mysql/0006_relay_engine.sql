-- Relay engine v2 (docs/outbox.md, "How relays deliver"). Relays lease
-- buckets of partition keys instead of rows: a row's bucket is a hash of its
-- key, so one key's events always share a bucket, and the one relay leasing a
-- bucket reads it in seq order without locking rows and deletes what the
-- broker acknowledged: one write per event, no head-finding query.
--
-- Computed by the database, so rows inserted with plain SQL get it too.
ALTER TABLE herald_outbox
  ADD COLUMN bucket SMALLINT AS (CRC32(partition_key) & 63) STORED;

-- One row per destination and bucket, created by the first relay of a
-- destination. owner is NULL while no relay holds the bucket.
CREATE TABLE herald_outbox_buckets (
  destination VARCHAR(128) NOT NULL,
  bucket      SMALLINT     NOT NULL,
  owner       VARCHAR(255) NULL,
  expires_at  DATETIME(6)  NULL,
  PRIMARY KEY (destination, bucket)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The relays of each destination, each renewing its row while it runs, so
-- that each can take its fair share of the buckets.
CREATE TABLE herald_outbox_relays (
  destination VARCHAR(128) NOT NULL,
  name        VARCHAR(255) NOT NULL,
  expires_at  DATETIME(6)  NOT NULL,
  PRIMARY KEY (destination, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Routing at relay time: writers write one row per event, for 'main'; the
-- relay of 'main' copies it for every destination the route table names
-- (config destinations, stored webhook endpoints) and marks it routed,
-- before and whatever it publishes, so no destination's outage holds back
-- another's. Rows written before this migration were routed by their
-- writers.
ALTER TABLE herald_outbox
  ADD COLUMN routed BOOLEAN NOT NULL DEFAULT FALSE,
  ADD INDEX herald_outbox_unrouted (routed, state, destination, seq);

UPDATE herald_outbox SET routed = TRUE;
