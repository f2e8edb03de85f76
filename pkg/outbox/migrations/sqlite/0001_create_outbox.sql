-- The transactional outbox. A producer INSERTs a row in the same transaction
-- as its business change; relays claim, publish and then delete (or mark
-- delivered) the row.
--
-- Times are TEXT in one fixed-width UTC form, 'YYYY-MM-DDTHH:MM:SS.mmmZ'
-- (strftime('%Y-%m-%dT%H:%M:%fZ','now') produces it), so that comparing the
-- strings compares the instants.
CREATE TABLE herald_outbox (
  seq              INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id         TEXT    NOT NULL UNIQUE,
  event_type       TEXT    NOT NULL,
  partition_key    TEXT    NOT NULL DEFAULT '',
  payload          BLOB    NOT NULL,
  state            TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  available_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  lease_owner      TEXT,
  lease_expires_at TEXT,
  last_error       TEXT,
  created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  delivered_at     TEXT
);

-- Claiming walks pending rows in insertion order; delivered and dead rows
-- are not in this index, so they never slow the claim down.
CREATE INDEX herald_outbox_pending ON herald_outbox (seq) WHERE state = 'pending';

CREATE INDEX herald_outbox_dead ON herald_outbox (seq) WHERE state = 'dead';
