-- Destinations: one event may go to several places (the main adapter and,
-- through the route table, partner webhooks, a second queue). Each place
-- gets its own row of the event, so each keeps its own attempts, backoff,
-- lease and dead letter, and one failing destination never holds back or
-- duplicates another. 'main' is the main destination, the one every event
-- goes to. See docs/outbox.md.
--
-- An event id is unique per destination; event_id leads, so a lookup by id
-- alone still uses the index. Relays claim one destination's pending rows in
-- seq order, and with ordering look for an earlier pending row of the same
-- key and destination.
ALTER TABLE herald_outbox
  ADD COLUMN destination VARCHAR(128) NOT NULL DEFAULT 'main' AFTER seq,
  DROP INDEX herald_outbox_event_id,
  ADD CONSTRAINT herald_outbox_event_destination UNIQUE (event_id, destination),
  DROP INDEX herald_outbox_claim,
  ADD INDEX herald_outbox_claim (state, destination, seq),
  DROP INDEX herald_outbox_key,
  ADD INDEX herald_outbox_key (destination, partition_key, state, seq);
