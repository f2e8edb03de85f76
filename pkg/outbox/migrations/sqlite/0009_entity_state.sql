-- The enricher's last known state of each entity it described: the data of
-- the last created or updated event it emitted for a data product, output
-- port or technical asset. When the portal deletes the entity its row is
-- gone; the deletion's event carries this as last_known, for teardown. Written
-- in the transaction that writes the events. See docs/enricher.md.
-- Times are TEXT in the fixed-width UTC form 'YYYY-MM-DDTHH:MM:SS.ffffffZ',
-- so comparing the strings compares the instants.
--
-- as_of is the time the data was true; a write with an earlier as_of (a
-- slower, concurrent enrichment) leaves a later state in place.
CREATE TABLE herald_enricher_entity_state (
  entity_kind TEXT NOT NULL,
  entity_id   TEXT NOT NULL,
  data        TEXT NOT NULL,
  as_of       TEXT NOT NULL,
  updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (entity_kind, entity_id)
);
