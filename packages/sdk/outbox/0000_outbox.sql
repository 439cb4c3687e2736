-- The Sluice transactional outbox: events written in the producer's own transaction,
-- published to JetStream by `sluice outbox-relay`. Idempotent, so running it again is safe.
-- Apply it with `createOutbox(db).migrate()`, with `psql "$DATABASE_URL" -f 0000_outbox.sql`,
-- or copy it into your own migrations. Needs PostgreSQL 14 or newer.
CREATE TABLE IF NOT EXISTS sluice_outbox (
  -- The event id: the envelope's `id`, and the message's Nats-Msg-Id unless the event has an idempotency key.
  id text PRIMARY KEY,
  -- Insertion order: the relay publishes each key's rows in this order.
  seq bigint GENERATED ALWAYS AS IDENTITY,
  type text NOT NULL,
  key text,
  -- The envelope exactly as it is published (json, not jsonb, so `data` keeps its key order).
  envelope json NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  last_error text
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS sluice_outbox_pending ON sluice_outbox (seq) WHERE sent_at IS NULL;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS sluice_outbox_pending_key ON sluice_outbox (key, seq) WHERE sent_at IS NULL;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS sluice_outbox_sent ON sluice_outbox (sent_at) WHERE sent_at IS NOT NULL;
--> statement-breakpoint
-- Wakes the relays when the inserting transaction commits (never for a rolled-back one).
CREATE OR REPLACE FUNCTION sluice_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('sluice_outbox', '');
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE OR REPLACE TRIGGER sluice_outbox_notify AFTER INSERT ON sluice_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_outbox_notify();
