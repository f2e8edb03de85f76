-- Per-key ordering asks, for each candidate row, whether an earlier row of
-- its key is still pending; retention finds old delivered rows. Both read
-- only the rows they need.
CREATE INDEX herald_outbox_pending_key ON herald_outbox (partition_key, seq) WHERE state = 'pending';

CREATE INDEX herald_outbox_delivered ON herald_outbox (delivered_at) WHERE state = 'delivered';
