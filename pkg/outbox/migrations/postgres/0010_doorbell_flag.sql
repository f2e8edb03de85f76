-- The doorbell's check moves out of the writers' way. Since 0006 the
-- trigger ran a plpgsql function on every INSERT statement, and that
-- function queried herald_outbox_waiters: with no relay waiting it still
-- cost 16 concurrent one-row writers 16-20 % of their commit rate (herald
-- bench's writers phase, docs/benchmarks.md).
--
-- Now the trigger's WHEN clause decides, before any function is called: it
-- reads the last value of a sequence, which the relays set to the latest
-- expiry among the waiting relays, in epoch seconds (Store.Wait,
-- Store.StopWaiting), and the function runs only while that lies ahead. A
-- sequence is read without a query plan, a snapshot or a row lock, and
-- setval is not transactional, so the writers never wait on a relay. A
-- relay killed while waiting leaves an expiry that simply passes.
CREATE SEQUENCE herald_outbox_doorbell MINVALUE 0 START 0;
SELECT setval('herald_outbox_doorbell', 0, true); -- so that it reads 0, not NULL

-- The trigger runs as the writer, so every writer may read the doorbell.
-- It holds a time, nothing else.
GRANT SELECT ON SEQUENCE herald_outbox_doorbell TO PUBLIC;

CREATE OR REPLACE FUNCTION herald_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('herald_outbox', TG_TABLE_SCHEMA);
  RETURN NULL;
END
$$;

DROP TRIGGER herald_outbox_notify ON herald_outbox;
CREATE TRIGGER herald_outbox_notify AFTER INSERT ON herald_outbox FOR EACH STATEMENT
  WHEN (to_timestamp(pg_sequence_last_value('herald_outbox_doorbell')) > now())
  EXECUTE FUNCTION herald_outbox_notify();
