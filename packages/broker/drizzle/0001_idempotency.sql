CREATE TABLE "idempotency_keys" (
	"key" text PRIMARY KEY NOT NULL,
	"event_id" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "events" ADD COLUMN "duplicate_of" text;