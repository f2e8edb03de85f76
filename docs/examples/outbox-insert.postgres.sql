-- Inside the transaction that makes the business change:
WITH ev AS (
  SELECT gen_random_uuid()::text AS id,
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
         'partitionkey', '10000000-0000-4000-8000-000000000001',
         'data', json_build_object('id', '10000000-0000-4000-8000-000000000001', 'name', 'Orders')
       )::text
FROM ev;
