-- The delivery log (docs/outbox.md, "Delivery log"): one row per attempt a
-- relay made to deliver an event to a destination, written in the same
-- transaction as the attempt's outcome, so the log and the outbox never
-- disagree. Pruned by retention (delivery_log.retention), oldest ids first.
-- Times are UTC DATETIME(6).
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
  id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  attempted_at DATETIME(6)  NOT NULL,
  destination  VARCHAR(128) NOT NULL,
  event_id     VARCHAR(64)  NOT NULL,
  event_type   VARCHAR(255) NOT NULL,
  attempt      INT          NOT NULL,
  outcome      VARCHAR(16)  NOT NULL,
  status       INT          NULL,
  answer       VARCHAR(512) NOT NULL,
  latency_us   BIGINT       NOT NULL,
  CONSTRAINT herald_delivery_attempts_outcome CHECK (outcome IN ('delivered', 'failed', 'dead', 'unavailable')),
  INDEX herald_delivery_attempts_event (event_id, id),
  INDEX herald_delivery_attempts_destination (destination, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
