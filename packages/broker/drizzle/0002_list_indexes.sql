DROP INDEX "audit_log_at_idx";--> statement-breakpoint
DROP INDEX "events_key_idx";--> statement-breakpoint
DROP INDEX "events_received_at_idx";--> statement-breakpoint
CREATE INDEX "attempts_destination_started_at_idx" ON "attempts" USING btree ("destination_id","started_at");--> statement-breakpoint
CREATE INDEX "audit_log_at_id_idx" ON "audit_log" USING btree ("at","id");--> statement-breakpoint
CREATE INDEX "audit_log_destination_at_id_idx" ON "audit_log" USING btree ("destination_id","at","id");--> statement-breakpoint
CREATE INDEX "events_key_received_at_idx" ON "events" USING btree ("key","received_at");--> statement-breakpoint
CREATE INDEX "events_received_at_id_idx" ON "events" USING btree ("received_at","id");