-- Destinations: one event may go to several places (the main adapter and,
-- through the route table, partner webhooks, a second queue). Each place
-- gets its own row of the event, so each keeps its own attempts, backoff,
-- lease and dead letter, and one failing destination never holds back or
-- duplicates another. 'main' is the main destination, the one every event
-- goes to. See docs/outbox.md.
ALTER TABLE herald_outbox ADD COLUMN destination TEXT NOT NULL DEFAULT 'main';

-- An event id is unique per destination. event_id leads, so a lookup by id
-- alone still uses the index.
ALTER TABLE herald_outbox DROP CONSTRAINT herald_outbox_event_id_key;

ALTER TABLE herald_outbox ADD CONSTRAINT herald_outbox_event_destination UNIQUE (event_id, destination);

-- Relays claim one destination's pending rows in seq order, and with
-- ordering look for an earlier pending row of the same key and destination.
DROP INDEX herald_outbox_pending;

CREATE INDEX herald_outbox_pending ON herald_outbox (destination, seq) WHERE state = 'pending';

DROP INDEX herald_outbox_pending_key;

CREATE INDEX herald_outbox_pending_key ON herald_outbox (destination, partition_key, seq) WHERE state = 'pending';
