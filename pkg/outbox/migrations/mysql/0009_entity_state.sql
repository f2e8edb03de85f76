-- The enricher's last known state of each entity it described: the data of
-- the last created or updated event it emitted for a data product, output
-- port or technical asset. When the portal deletes the entity its row is
-- gone; the deletion's event carries this as last_known, for teardown. Written
-- in the transaction that writes the events. Times are UTC DATETIME(6). See
-- docs/enricher.md.
--
-- as_of is the time the data was true; a write with an earlier as_of (a
-- slower, concurrent enrichment) leaves a later state in place.
CREATE TABLE herald_enricher_entity_state (
  entity_kind VARCHAR(32) NOT NULL,
  entity_id   VARCHAR(64) NOT NULL,
  data        JSON        NOT NULL,
  as_of       DATETIME(6) NOT NULL,
  updated_at  DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
  PRIMARY KEY (entity_kind, entity_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
