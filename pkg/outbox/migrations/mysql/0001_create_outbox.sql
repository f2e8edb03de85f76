-- The transactional outbox for MySQL 8 and MariaDB 10.6+ (both have
-- FOR UPDATE SKIP LOCKED). Times are UTC DATETIME(6). See docs/outbox.md.
CREATE TABLE herald_outbox (
  seq              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  event_id         VARCHAR(64)  NOT NULL,
  event_type       VARCHAR(255) NOT NULL,
  partition_key    VARCHAR(128) NOT NULL DEFAULT '',
  -- Bytes, not JSON: the JSON type would re-serialize the event and
  -- retries must send the exact bytes that were written.
  payload          LONGBLOB     NOT NULL,
  state            VARCHAR(16)  NOT NULL DEFAULT 'pending',
  attempts         INT          NOT NULL DEFAULT 0,
  available_at     DATETIME(6)  NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
  lease_owner      VARCHAR(255) NULL,
  lease_expires_at DATETIME(6)  NULL,
  last_error       TEXT         NULL,
  created_at       DATETIME(6)  NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
  delivered_at     DATETIME(6)  NULL,
  CONSTRAINT herald_outbox_event_id UNIQUE (event_id),
  CONSTRAINT herald_outbox_state CHECK (state IN ('pending', 'delivered', 'dead')),
  -- No partial indexes here: state leads, so pending rows are one range of
  -- the index and dead or delivered rows are never scanned by a claim.
  INDEX herald_outbox_claim (state, seq),
  INDEX herald_outbox_key (partition_key, state, seq),
  INDEX herald_outbox_delivered (state, delivered_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
