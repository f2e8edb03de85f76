-- The enricher's last known state of each entity it described: the data of
-- the last created or updated event it emitted for a data product, output
-- port or technical asset. When the portal deletes the entity its row is
-- gone; the deletion's event carries this as last_known, for teardown. Written
-- in the transaction that writes the events. See docs/enricher.md.
--
-- data is JSONB: it is decoded again, never sent as it is, so its bytes need
-- not survive. as_of is the time the data was true; a write with an earlier
-- as_of (a slower, concurrent enrichment) leaves a later state in place.
CREATE TABLE herald_enricher_entity_state (
  entity_kind TEXT        NOT NULL,
  entity_id   TEXT        NOT NULL,
  data        JSONB       NOT NULL,
  as_of       TIMESTAMPTZ NOT NULL,
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (entity_kind, entity_id)
);
