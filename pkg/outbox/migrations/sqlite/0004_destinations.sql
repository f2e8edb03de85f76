-- Destinations: one event may go to several places (the main adapter and,
-- through the route table, partner webhooks, a second queue). Each place
-- gets its own row of the event, so each keeps its own attempts, backoff,
-- lease and dead letter, and one failing destination never holds back or
-- duplicates another. 'main' is the main destination, the one every event
-- goes to. See docs/outbox.md.
--
-- SQLite cannot change a table's UNIQUE constraint in place, so the table is
-- rebuilt: an event id becomes unique per destination.
CREATE TABLE herald_outbox_new (
  seq              INTEGER PRIMARY KEY AUTOINCREMENT,
  destination      TEXT    NOT NULL DEFAULT 'main',
  event_id         TEXT    NOT NULL,
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
  delivered_at     TEXT,
  UNIQUE (event_id, destination)
);

INSERT INTO herald_outbox_new (seq, event_id, event_type, partition_key, payload, state, attempts,
  available_at, lease_owner, lease_expires_at, last_error, created_at, delivered_at)
SELECT seq, event_id, event_type, partition_key, payload, state, attempts,
  available_at, lease_owner, lease_expires_at, last_error, created_at, delivered_at
FROM herald_outbox;

-- Carry the AUTOINCREMENT high-water mark over, so a seq is never reused.
DELETE FROM sqlite_sequence WHERE name = 'herald_outbox_new';

INSERT INTO sqlite_sequence (name, seq) SELECT 'herald_outbox_new', seq FROM sqlite_sequence WHERE name = 'herald_outbox';

DROP TABLE herald_outbox;

ALTER TABLE herald_outbox_new RENAME TO herald_outbox;

-- Relays claim one destination's pending rows in seq order, and with
-- ordering look for an earlier pending row of the same key and destination.
CREATE INDEX herald_outbox_pending ON herald_outbox (destination, seq) WHERE state = 'pending';

CREATE INDEX herald_outbox_pending_key ON herald_outbox (destination, partition_key, seq) WHERE state = 'pending';

CREATE INDEX herald_outbox_dead ON herald_outbox (seq) WHERE state = 'dead';

CREATE INDEX herald_outbox_delivered ON herald_outbox (delivered_at) WHERE state = 'delivered';
