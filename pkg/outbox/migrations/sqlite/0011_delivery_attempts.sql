-- The delivery log (docs/outbox.md, "Delivery log"): one row per attempt a
-- relay made to deliver an event to a destination, written in the same
-- transaction as the attempt's outcome, so the log and the outbox never
-- disagree. Pruned by retention (delivery_log.retention), oldest ids first.
-- attempted_at is TEXT in the outbox's fixed-width UTC form.
--
-- attempt is the event's attempt number at the time (its attempts + 1); an
-- 'unavailable' row (the destination was down as a whole) counts no attempt
-- of the event, so the next row may carry the same number. status is the
-- HTTP status of a webhook, NULL for brokers. answer is the broker's error or
-- the receiver's answer, redacted and at most 512 bytes.
--
-- No index on attempted_at: it grows with id closely enough that pruning
-- and time filters go by the primary key, and each insert pays for two
-- indexes, not three.
CREATE TABLE herald_delivery_attempts (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  attempted_at TEXT    NOT NULL,
  destination  TEXT    NOT NULL,
  event_id     TEXT    NOT NULL,
  event_type   TEXT    NOT NULL,
  attempt      INTEGER NOT NULL,
  outcome      TEXT    NOT NULL
               CHECK (outcome IN ('delivered', 'failed', 'dead', 'unavailable')),
  status       INTEGER,
  answer       TEXT    NOT NULL,
  latency_us   INTEGER NOT NULL
);

CREATE INDEX herald_delivery_attempts_event ON herald_delivery_attempts (event_id, id);

CREATE INDEX herald_delivery_attempts_destination ON herald_delivery_attempts (destination, id);
