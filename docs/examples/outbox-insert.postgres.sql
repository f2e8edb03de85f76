-- Inside the transaction that makes the business change. herald_uuidv7()
-- comes with the outbox's migrations: a UUIDv7, like Herald's own ids.
WITH ev AS (
  SELECT herald_uuidv7()::text AS id,
         to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
)
INSERT INTO herald_outbox (event_id, event_type, partition_key, payload)
SELECT ev.id, 'io.herald.portal.data_product.created', '10000000-0000-4000-8000-000000000001',
       json_build_object(
         'specversion', '1.0',
         'id', ev.id,
         'source', '/portal',
         'type', 'io.herald.portal.data_product.created',
         'subject', 'data_products/10000000-0000-4000-8000-000000000001',
         'time', ev.at,
         'datacontenttype', 'application/json',
         'dataschema', 'https://heraldhq.github.io/herald/schemas/io.herald.portal.data_product.created/v1.json',
         'partitionkey', '10000000-0000-4000-8000-000000000001',
         -- Everything the type's schema requires (docs/events.md): consumers
         -- act on the event alone.
         'data', json_build_object(
           'id', '10000000-0000-4000-8000-000000000001',
           'name', 'Orders',
           'namespace', 'sales-orders',
           'description', 'Order facts',
           'status', 'active',
           'domain', json_build_object('id', '00000000-0000-4000-8000-0000000000d1', 'name', 'Sales'),
           'type', json_build_object('id', '00000000-0000-4000-8000-0000000000a1', 'name', 'Source-aligned'),
           'settings', json_build_object('retention_days', '30'),
           'team_members', json_build_array(json_build_object(
             'user', json_build_object('id', '00000000-0000-4000-8000-000000000001', 'email', 'ana@example.com'),
             'role', 'Owner')),
           'as_of', ev.at,
           'actor_id', '00000000-0000-4000-8000-000000000001',
           'audit_record_id', 'e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01'
         )
       )::text
FROM ev;
