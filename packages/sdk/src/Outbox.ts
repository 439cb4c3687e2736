/**
 * The transactional outbox for producers with their own Postgres: an event is inserted into
 * `sluice_outbox` in the same transaction as the data it describes, so both commit or
 * neither does, even while NATS is unreachable. The relay (`OutboxRelay`) publishes the
 * committed rows to JetStream afterwards.
 */
import { Either } from "effect"
import { sql } from "drizzle-orm"
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core"
import { bigint, integer, json, pgTable, text, timestamp } from "drizzle-orm/pg-core"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import { Envelope } from "@sluice/protocol"
import { prepare } from "./internal/message.js"
import type { PublishInput } from "./Sluice.js"

/** The channel the insert trigger notifies, on which relays listen. */
export const CHANNEL = "sluice_outbox"

/** The checked-in migration, for `psql -f` or for copying into the producer's own migrations. */
export const migrationFile = fileURLToPath(new URL("../outbox/0000_outbox.sql", import.meta.url))

/**
 * The outbox table as created by the migration, exported so a producer can look at its
 * backlog with Drizzle (`where(isNull(sluiceOutbox.sentAt))`).
 */
export const sluiceOutbox = pgTable("sluice_outbox", {
  id: text("id").primaryKey(),
  seq: bigint("seq", { mode: "number" }).generatedAlwaysAsIdentity(),
  type: text("type").notNull(),
  key: text("key"),
  envelope: json("envelope").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  sentAt: timestamp("sent_at", { withTimezone: true }),
  attempts: integer("attempts").notNull().default(0),
  lastError: text("last_error")
})

/**
 * A Drizzle Postgres database or transaction with any driver (`drizzle-orm/node-postgres`,
 * `drizzle-orm/postgres-js`, …): only the query builder is used, never the driver itself.
 */
export interface OutboxDatabase {
  readonly insert: PgDatabase<PgQueryResultHKT>["insert"]
  readonly execute: PgDatabase<PgQueryResultHKT>["execute"]
  // Method syntax: a database typed with the producer's own schema passes its transactions typed with it too.
  transaction<T>(run: (tx: OutboxDatabase) => Promise<T>): Promise<T>
}

/** Enqueues events in the caller's transactions; see `createOutbox`. */
export interface Outbox {
  /**
   * Validates the event exactly as `publish` does and inserts it into `sluice_outbox` with
   * `tx` — pass the transaction that writes the data the event is about. Resolves with the
   * event id, the `Nats-Msg-Id` the relay publishes it under (as `publish` does, an event
   * with an `idempotencyKey` is deduplicated on that key instead); rejects with
   * `InvalidEnvelope` naming the bad field, so the transaction can roll back. Enqueuing an id
   * that is already in the table stores nothing, like publishing an id JetStream already has.
   */
  readonly enqueue: (tx: OutboxDatabase, event: PublishInput) => Promise<string>
  /** Creates or updates the outbox table, its indexes and its notify trigger (idempotent). */
  readonly migrate: () => Promise<void>
}

/** Statements in the migration file are separated the way drizzle-kit separates them. */
const statementBreak = "--> statement-breakpoint"

/** Several processes starting at once run the migration one after another. */
const migrationLock = sql`SELECT pg_advisory_xact_lock(hashtext('sluice:outbox:migration'))`

/** The outbox of a Drizzle Postgres database (node-postgres or postgres.js driver). */
export const createOutbox = (db: OutboxDatabase): Outbox => ({
  enqueue: async (tx, event) => {
    const envelope = Either.getOrThrowWith(prepare(event), (invalid) => invalid)
    await tx
      .insert(sluiceOutbox)
      .values({
        id: envelope.id,
        type: envelope.type,
        key: envelope.key ?? null,
        // Cast from text so that every driver stores the published JSON byte for byte.
        envelope: sql`${Envelope.encodeEnvelope(envelope)}::json`
      })
      .onConflictDoNothing({ target: sluiceOutbox.id })
    return envelope.id
  },
  migrate: async () => {
    const statements = (await readFile(migrationFile, "utf8")).split(statementBreak)
    await db.transaction(async (tx) => {
      await tx.execute(migrationLock)
      for (const statement of statements) await tx.execute(sql.raw(statement))
    })
  }
})
