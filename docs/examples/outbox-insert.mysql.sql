-- Inside the transaction that makes the business change:
SET @id = UUID();
INSERT INTO herald_outbox (event_id, event_type, partition_key, payload)
VALUES (@id, 'io.herald.portal.data_product.created', '10000000-0000-4000-8000-000000000001',
  JSON_OBJECT(
    'specversion', '1.0',
    'id', @id,
    'source', '/portal',
    'type', 'io.herald.portal.data_product.created',
    'subject', 'data_products/10000000-0000-4000-8000-000000000001',
    'time', DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ'),
    'datacontenttype', 'application/json',
    'partitionkey', '10000000-0000-4000-8000-000000000001',
    'data', JSON_OBJECT('id', '10000000-0000-4000-8000-000000000001', 'name', 'Orders')));
