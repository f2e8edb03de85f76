-- herald_uuidv7() makes event ids for producers that write the outbox with
-- plain SQL (docs/outbox.md): UUIDv7s (RFC 9562), like the ids Herald makes
-- itself. PostgreSQL 18 has uuidv7(); 15 to 17 have only gen_random_uuid(),
-- whose version 4 ids are random. A time-ordered id keeps inserts into the
-- unique index on event_id at its right edge instead of splitting pages at
-- random, and tells when its event was made.
--
-- The layout: 48 bits of Unix time in milliseconds, the version (7), 12 bits
-- of the fraction of that millisecond (RFC 9562 section 6.2, method 3:
-- clock_timestamp() has microseconds, so ids made one after the other in a
-- session sort in the order they were made unless they share a
-- microsecond), the variant (binary 10) and 62 random bits. The random bits
-- and the variant are those of gen_random_uuid(). clock_timestamp(), not
-- now(): the ids of one transaction differ in time too.
CREATE OR REPLACE FUNCTION herald_uuidv7() RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  unix_ms numeric := extract(epoch FROM clock_timestamp()) * 1000;
  ms      bigint  := floor(unix_ms);
  frac    int     := floor((unix_ms - ms) * 4096);
  b       bytea   := uuid_send(gen_random_uuid());
BEGIN
  b := overlay(b PLACING substring(int8send(ms) FROM 3) FROM 1 FOR 6);
  b := set_byte(b, 6, x'70'::int | (frac >> 8));
  b := set_byte(b, 7, frac & 255);
  RETURN encode(b, 'hex')::uuid;
END
$$;
