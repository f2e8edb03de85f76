-- Webhook endpoints registered at runtime (`herald webhooks`, the admin API
-- under /v1/webhooks), stored beside the outbox so that a subscription and
-- the events routed to it live in one database. Each endpoint is served as
-- the outbox destination 'webhook:<name>'. See docs/webhooks.md.
--
-- Times are Unix milliseconds (0: never), the same on every dialect, so no
-- driver's time-zone handling is involved. Lists and maps are JSON text.
CREATE TABLE herald_webhook_endpoints (
  name               VARCHAR(64) NOT NULL PRIMARY KEY,
  url                TEXT        NOT NULL,
  types              TEXT        NOT NULL,
  headers            TEXT        NOT NULL,
  -- [{"secret": "whsec_...", "expires_at": <ms or 0>}], newest first.
  secrets            TEXT        NOT NULL,
  enabled            BOOLEAN     NOT NULL,
  -- Why Herald (a 410, failing for webhooks.disable_after) or an operator
  -- disabled it; '' while enabled.
  disabled_reason    TEXT        NOT NULL,
  disabled_at        BIGINT      NOT NULL DEFAULT 0,
  -- Bumped by every change of what is delivered, so a running Herald sees
  -- which endpoints to reload.
  revision           BIGINT      NOT NULL DEFAULT 1,
  created_at         BIGINT      NOT NULL,
  updated_at         BIGINT      NOT NULL,
  -- Delivery status, written by the Herald that delivers.
  last_attempt_at    BIGINT      NOT NULL DEFAULT 0,
  last_success_at    BIGINT      NOT NULL DEFAULT 0,
  failing_since      BIGINT      NOT NULL DEFAULT 0,
  last_status_code   INTEGER     NOT NULL DEFAULT 0,
  last_error         TEXT        NOT NULL,
  attempts           BIGINT      NOT NULL DEFAULT 0,
  failures           BIGINT      NOT NULL DEFAULT 0
);
