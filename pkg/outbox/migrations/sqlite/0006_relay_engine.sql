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
