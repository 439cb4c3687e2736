CREATE TABLE "attempts" (
	"id" text PRIMARY KEY NOT NULL,
	"event_id" text NOT NULL,
	"destination_id" text NOT NULL,
	"attempt" integer NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"duration_ms" integer NOT NULL,
	"outcome" text NOT NULL,
	"status_code" integer,
	"error" text,
	"response_excerpt" text
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" text PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"destination_id" text,
	"details" jsonb
);
--> statement-breakpoint
CREATE TABLE "deliveries" (
	"event_id" text NOT NULL,
	"destination_id" text NOT NULL,
	"state" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_status_code" integer,
	"last_error" text,
	"canceled_by" text,
	"duplicate_of" text,
	"ignored_reason" text,
	"next_attempt_at" timestamp with time zone,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "deliveries_event_id_destination_id_pk" PRIMARY KEY("event_id","destination_id")
);
--> statement-breakpoint
CREATE TABLE "destinations" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"url" text NOT NULL,
	"subscriptions" jsonb NOT NULL,
	"settings" jsonb NOT NULL,
	"secret" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"key" text,
	"version" jsonb,
	"idempotency_key" text,
	"occurred_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	"stream_seq" bigint NOT NULL,
	"data" jsonb,
	"headers" jsonb
);
--> statement-breakpoint
CREATE TABLE "health_transitions" (
	"id" text PRIMARY KEY NOT NULL,
	"destination_id" text NOT NULL,
	"from_state" text NOT NULL,
	"to_state" text NOT NULL,
	"reason" text NOT NULL,
	"at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "attempts_event_destination_started_at_idx" ON "attempts" USING btree ("event_id","destination_id","started_at");--> statement-breakpoint
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE INDEX "deliveries_destination_state_updated_at_idx" ON "deliveries" USING btree ("destination_id","state","updated_at");--> statement-breakpoint
CREATE INDEX "events_type_received_at_idx" ON "events" USING btree ("type","received_at");--> statement-breakpoint
CREATE INDEX "events_key_idx" ON "events" USING btree ("key");--> statement-breakpoint
CREATE INDEX "events_received_at_idx" ON "events" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "events_idempotency_key_idx" ON "events" USING btree ("idempotency_key");--> statement-breakpoint
CREATE INDEX "health_transitions_destination_at_idx" ON "health_transitions" USING btree ("destination_id","at");