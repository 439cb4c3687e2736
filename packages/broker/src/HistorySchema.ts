/**
 * The history database's tables (Drizzle). Migrations under `../drizzle` are generated
 * from this file with `pnpm db:generate`; never edit a generated migration by hand.
 *
 * There are no foreign keys on purpose: events and delivery facts reach the database
 * through separate consumers, in any order, and each must be storable on its own.
 */
import type { Destination, History, States } from "@sluice/protocol"
import { bigint, index, integer, jsonb, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core"

const at = (name: string) => timestamp(name, { withTimezone: true, mode: "date" })

/** Destination configuration; this table is the source of truth for destinations. */
export const destinations = pgTable("destinations", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  url: text("url").notNull(),
  subscriptions: jsonb("subscriptions").$type<Destination.Destination["subscriptions"]>().notNull(),
  /** Stored as written; read back merged over the current defaults so old rows gain new fields. */
  settings: jsonb("settings").$type<Partial<Destination.DestinationSettings>>().notNull(),
  secret: text("secret").notNull(),
  createdAt: at("created_at").notNull(),
  updatedAt: at("updated_at").notNull()
})

/** Every event as received, with its JetStream sequence. */
export const events = pgTable(
  "events",
  {
    id: text("id").primaryKey(),
    type: text("type").notNull(),
    key: text("key"),
    /** A number or an RFC 3339 string, kept as the producer sent it. */
    version: jsonb("version").$type<number | string>(),
    idempotencyKey: text("idempotency_key"),
    occurredAt: at("occurred_at").notNull(),
    receivedAt: at("received_at").notNull(),
    streamSeq: bigint("stream_seq", { mode: "number" }).notNull(),
    /** SQL NULL when the event carries no data (JSON `null`). */
    data: jsonb("data").$type<unknown>(),
    headers: jsonb("headers").$type<Readonly<Record<string, string>>>(),
    /** The first event with the same idempotency key, when this one repeats it beyond JetStream's window. */
    duplicateOf: text("duplicate_of")
  },
  (t) => [
    index("events_type_received_at_idx").on(t.type, t.receivedAt),
    index("events_key_received_at_idx").on(t.key, t.receivedAt),
    // The event list pages newest first by (received_at, id).
    index("events_received_at_id_idx").on(t.receivedAt, t.id),
    index("events_idempotency_key_idx").on(t.idempotencyKey)
  ]
)

/** The first event of each idempotency key: the unique key that makes a late repeat a duplicate. */
export const idempotencyKeys = pgTable("idempotency_keys", {
  key: text("key").primaryKey(),
  eventId: text("event_id").notNull()
})

/** The current state of one event at one destination; the newest fact wins. */
export const deliveries = pgTable(
  "deliveries",
  {
    eventId: text("event_id").notNull(),
    destinationId: text("destination_id").notNull(),
    state: text("state").$type<States.DeliveryState>().notNull(),
    attempts: integer("attempts").notNull().default(0),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    canceledBy: text("canceled_by"),
    duplicateOf: text("duplicate_of"),
    ignoredReason: text("ignored_reason"),
    nextAttemptAt: at("next_attempt_at"),
    createdAt: at("created_at").notNull(),
    updatedAt: at("updated_at").notNull()
  },
  (t) => [
    primaryKey({ columns: [t.eventId, t.destinationId] }),
    index("deliveries_destination_state_updated_at_idx").on(t.destinationId, t.state, t.updatedAt)
  ]
)

/** One row per HTTP attempt, keyed by the fact id so a replayed fact adds nothing. */
export const attempts = pgTable(
  "attempts",
  {
    id: text("id").primaryKey(),
    eventId: text("event_id").notNull(),
    destinationId: text("destination_id").notNull(),
    attempt: integer("attempt").notNull(),
    startedAt: at("started_at").notNull(),
    durationMs: integer("duration_ms").notNull(),
    outcome: text("outcome").$type<History.AttemptOutcome>().notNull(),
    statusCode: integer("status_code"),
    error: text("error"),
    responseExcerpt: text("response_excerpt")
  },
  (t) => [
    index("attempts_event_destination_started_at_idx").on(t.eventId, t.destinationId, t.startedAt),
    // Latency and throughput of a destination over recent windows.
    index("attempts_destination_started_at_idx").on(t.destinationId, t.startedAt)
  ]
)

/** Every health transition of every destination, with its reason. */
export const healthTransitions = pgTable(
  "health_transitions",
  {
    id: text("id").primaryKey(),
    destinationId: text("destination_id").notNull(),
    fromState: text("from_state").$type<States.HealthState>().notNull(),
    toState: text("to_state").$type<States.HealthState>().notNull(),
    reason: text("reason").notNull(),
    at: at("at").notNull()
  },
  (t) => [
    index("health_transitions_destination_at_idx").on(t.destinationId, t.at),
    // Pruning deletes the oldest transitions of all destinations.
    index("health_transitions_at_idx").on(t.at)
  ]
)

/** What operators (or the broker acting for them) did. */
export const auditLog = pgTable(
  "audit_log",
  {
    id: text("id").primaryKey(),
    at: at("at").notNull(),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    destinationId: text("destination_id"),
    details: jsonb("details").$type<unknown>()
  },
  // The audit log pages newest first by (at, id), all of it or one destination's.
  (t) => [index("audit_log_at_id_idx").on(t.at, t.id), index("audit_log_destination_at_id_idx").on(t.destinationId, t.at, t.id)]
)
