-- Inside the transaction that makes the business change. UUID() is a
-- version 1 UUID in canonical lower-case form, which the relay accepts.
SET @id = UUID();
SET @at = DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ');
INSERT INTO herald_outbox (event_id, event_type, partition_key, payload)
VALUES (@id, 'io.herald.portal.data_product.created', '10000000-0000-4000-8000-000000000001',
  JSON_OBJECT(
    'specversion', '1.0',
    'id', @id,
    'source', '/portal',
    'type', 'io.herald.portal.data_product.created',
    'subject', 'data_products/10000000-0000-4000-8000-000000000001',
    'time', @at,
    'datacontenttype', 'application/json',
    'dataschema', 'https://heraldhq.github.io/herald/schemas/io.herald.portal.data_product.created/v1.json',
    'partitionkey', '10000000-0000-4000-8000-000000000001',
    -- Everything the type's schema requires (docs/events.md): consumers act
    -- on the event alone.
    'data', JSON_OBJECT(
      'id', '10000000-0000-4000-8000-000000000001',
      'name', 'Orders',
      'namespace', 'sales-orders',
      'description', 'Order facts',
      'status', 'active',
      'domain', JSON_OBJECT('id', '00000000-0000-4000-8000-0000000000d1', 'name', 'Sales'),
      'type', JSON_OBJECT('id', '00000000-0000-4000-8000-0000000000a1', 'name', 'Source-aligned'),
      'settings', JSON_OBJECT('retention_days', '30'),
      'team_members', JSON_ARRAY(JSON_OBJECT(
        'user', JSON_OBJECT('id', '00000000-0000-4000-8000-000000000001', 'email', 'ana@example.com'),
        'role', 'Owner')),
      'as_of', @at,
      'actor_id', '00000000-0000-4000-8000-000000000001',
      'audit_record_id', 'e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01')));
