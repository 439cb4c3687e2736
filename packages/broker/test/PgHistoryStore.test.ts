import { expect, layer, type Vitest } from "@effect/vitest"
import { Destination, type History } from "@sluice/protocol"
import { count, eq } from "drizzle-orm"
import { readMigrationFiles } from "drizzle-orm/migrator"
import { pgSchema, serial, text } from "drizzle-orm/pg-core"
import { Effect, Layer, Option } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { throwawayDatabase } from "../../../test/helpers/postgres.js"
import * as Database from "../src/Database.js"
import { AttemptFinished, DeliveryChanged, HealthChanged, OperatorActed } from "../src/Fact.js"
import * as HistorySchema from "../src/HistorySchema.js"
import { HistoryStore, layerMemory } from "../src/HistoryStore.js"
import * as PgHistoryStore from "../src/PgHistoryStore.js"

const uid = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`
const base = Date.parse("2026-11-23T09:00:00.000Z")
const at = (seconds: number) => new Date(base + seconds * 1000).toISOString()

const destination = (id: string): Destination.Destination =>
  Destination.makeDestination(
    { url: "https://receiver.example.com/hooks", subscriptions: ["order.*"] },
    { id, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now: at(0) }
  )

const storedEvent = (id: string, overrides: Partial<History.StoredEvent> = {}): History.StoredEvent => ({
  id,
  type: "order.created",
  key: "order-1",
  version: 3,
  idempotencyKey: null,
  occurredAt: at(0),
  receivedAt: at(1),
  streamSeq: 42,
  data: { total: 12.5, items: [{ sku: "a" }] },
  headers: null,
  ...overrides
})

const attempt = (
  eventId: string,
  destinationId: string,
  n: number,
  startSecond: number,
  result: { state: "errored" | "completed" | "dead"; statusCode: number | null; error: string | null }
) =>
  new AttemptFinished({
    id: `${eventId}:${destinationId}:${n}`,
    eventId,
    destinationId,
    attempt: n,
    startedAt: at(startSecond),
    durationMs: 250,
    outcome: result.state === "completed" ? "success" : "failure",
    statusCode: result.statusCode,
    error: result.error,
    responseExcerpt: result.statusCode === null ? null : `status ${result.statusCode}`,
    state: result.state,
    nextAttemptAt: result.state === "errored" ? at(startSecond + 60) : null
  })

const failed = { state: "errored", statusCode: 500, error: "HTTP 500" } as const
const succeeded = { state: "completed", statusCode: 200, error: null } as const

const canceled = (eventId: string, destinationId: string, second: number, by: string) =>
  new DeliveryChanged({
    id: `${eventId}:${destinationId}:canceled`,
    eventId,
    destinationId,
    state: "canceled",
    at: at(second),
    reason: `superseded by ${by}`,
    canceledBy: by,
    duplicateOf: null,
    ignoredReason: null
  })

const deliveryOf = (eventId: string, destinationId: string) =>
  Effect.gen(function* () {
    const detail = yield* HistoryStore.pipe(Effect.flatMap((store) => store.getEvent(eventId)))
    const delivery = Option.getOrThrow(detail).deliveries.find((d) => d.destinationId === destinationId)
    if (delivery === undefined) throw new Error(`no delivery ${eventId} → ${destinationId}`)
    return delivery
  })

/** The store's contract; every implementation must pass it. */
const historySuite = (it: Vitest.MethodsNonLive<HistoryStore>) => {
  it.effect("creates, lists, updates and deletes destinations", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const created = destination(uid("dest"))
      yield* store.insertDestination(created)
      expect(yield* store.getDestination(created.id)).toEqual(Option.some(created))
      expect((yield* store.listDestinations).find((d) => d.id === created.id)).toEqual(created)

      const again = yield* Effect.flip(store.insertDestination({ ...created, name: "other" }))
      expect(again._tag).toBe("DestinationExists")
      expect(again.message).toContain(created.id)

      const updated: Destination.Destination = {
        ...created,
        name: "Partner API",
        subscriptions: ["order.*", "invoice.>"],
        rateLimit: { perSecond: 8, burst: 8 },
        retry: { ...created.retry, maxAttempts: 3 },
        updatedAt: at(60)
      }
      yield* store.updateDestination(updated)
      expect(yield* store.getDestination(created.id)).toEqual(Option.some(updated))

      expect(yield* store.deleteDestination(created.id)).toBe(true)
      expect(yield* store.deleteDestination(created.id)).toBe(false)
      expect(yield* store.getDestination(created.id)).toEqual(Option.none())
    })
  )

  it.effect("stores an event once and returns it as it was received", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const first = storedEvent(uid("evt"), {
        occurredAt: "2026-11-23T10:00:00+01:00",
        headers: { "x-tenant": "acme" },
        idempotencyKey: "order-1-created"
      })
      const second = storedEvent(uid("evt"), { key: null, version: "2026-11-23T09:00:00.123Z", data: "plain" })
      const empty = storedEvent(uid("evt"), { version: null, data: null })
      yield* store.insertEvents([first, second, empty])
      yield* store.insertEvents([{ ...first, type: "order.changed" }, second])

      const detail = Option.getOrThrow(yield* store.getEvent(first.id))
      expect(detail).toEqual({ event: { ...first, occurredAt: "2026-11-23T09:00:00.000Z" }, deliveries: [] })
      expect(Option.getOrThrow(yield* store.getEvent(second.id)).event).toEqual(second)
      expect(Option.getOrThrow(yield* store.getEvent(empty.id)).event).toEqual(empty)
      expect(yield* store.getEvent(uid("missing"))).toEqual(Option.none())
    })
  )

  it.effect("records an attempt once when its fact is applied twice", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const eventId = uid("evt")
      yield* store.insertEvents([storedEvent(eventId)])
      const facts = [attempt(eventId, "d1", 1, 10, failed), attempt(eventId, "d1", 2, 70, succeeded)]
      yield* store.applyFacts(facts)
      yield* store.applyFacts(facts)

      const delivery = yield* deliveryOf(eventId, "d1")
      expect(delivery.attemptLog.map((a) => a.attempt)).toEqual([1, 2])
      expect(delivery).toMatchObject({ state: "completed", attempts: 2, lastStatusCode: 200, lastError: null })
    })
  )

  it.effect("keeps the newest delivery state when facts arrive out of order", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const eventId = uid("evt")
      yield* store.insertEvents([storedEvent(eventId)])
      yield* store.applyFacts([attempt(eventId, "d1", 2, 70, succeeded)])
      yield* store.applyFacts([attempt(eventId, "d1", 1, 10, failed)])
      yield* store.applyFacts([canceled(eventId, "d1", 5, "evt-newer")])

      const delivery = yield* deliveryOf(eventId, "d1")
      expect(delivery).toMatchObject({
        state: "completed",
        attempts: 2,
        lastStatusCode: 200,
        lastError: null,
        canceledBy: null,
        nextAttemptAt: null,
        createdAt: at(5),
        updatedAt: new Date(base + 70_250).toISOString()
      })
      expect(delivery.attemptLog.map((a) => a.attempt)).toEqual([1, 2])
    })
  )

  it.effect("applies several facts for one delivery in one batch in order", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const eventId = uid("evt")
      const lateId = uid("evt")
      yield* store.insertEvents([storedEvent(eventId), storedEvent(lateId)])
      const destinationId = uid("dest")
      yield* store.applyFacts([
        attempt(eventId, "d1", 1, 10, failed),
        attempt(eventId, "d2", 1, 10, succeeded),
        attempt(eventId, "d1", 2, 70, failed),
        canceled(eventId, "d1", 100, "evt-newer"),
        // Older than what the batch already applied to `lateId`: must not win.
        canceled(lateId, "d1", 200, "evt-newer"),
        attempt(lateId, "d1", 1, 10, succeeded),
        new HealthChanged({ id: uid("health"), destinationId, from: "active", to: "down", reason: "5 failures", at: at(3) }),
        new OperatorActed({
          id: uid("audit"),
          at: at(4),
          actor: "admin",
          action: "destination.paused",
          destinationId,
          details: { note: "maintenance" }
        })
      ])

      expect(yield* deliveryOf(eventId, "d1")).toMatchObject({
        state: "canceled",
        attempts: 2,
        lastStatusCode: 500,
        lastError: "superseded by evt-newer",
        canceledBy: "evt-newer",
        nextAttemptAt: null,
        createdAt: at(10),
        updatedAt: at(100)
      })
      expect(yield* deliveryOf(eventId, "d2")).toMatchObject({ state: "completed", attempts: 1 })
      expect(yield* deliveryOf(lateId, "d1")).toMatchObject({
        state: "canceled",
        attempts: 1,
        canceledBy: "evt-newer",
        createdAt: at(10),
        updatedAt: at(200)
      })
    })
  )

  it.effect("returns an event with every delivery and its attempts, oldest first", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const event = storedEvent(uid("evt"))
      yield* store.insertEvents([event])
      yield* store.applyFacts([attempt(event.id, "d2", 2, 70, failed), attempt(event.id, "d1", 1, 10, succeeded)])
      yield* store.applyFacts([attempt(event.id, "d2", 1, 10, failed)])

      const detail = Option.getOrThrow(yield* store.getEvent(event.id))
      expect(detail.event).toEqual(event)
      expect(detail.deliveries).toEqual([
        {
          eventId: event.id,
          destinationId: "d1",
          state: "completed",
          attempts: 1,
          lastStatusCode: 200,
          lastError: null,
          canceledBy: null,
          duplicateOf: null,
          ignoredReason: null,
          nextAttemptAt: null,
          createdAt: at(10),
          updatedAt: new Date(base + 10_250).toISOString(),
          attemptLog: [
            {
              attempt: 1,
              startedAt: at(10),
              durationMs: 250,
              outcome: "success",
              statusCode: 200,
              error: null,
              responseExcerpt: "status 200"
            }
          ]
        },
        {
          eventId: event.id,
          destinationId: "d2",
          state: "errored",
          attempts: 2,
          lastStatusCode: 500,
          lastError: "HTTP 500",
          canceledBy: null,
          duplicateOf: null,
          ignoredReason: null,
          nextAttemptAt: at(130),
          createdAt: at(10),
          updatedAt: new Date(base + 70_250).toISOString(),
          attemptLog: [1, 2].map((n) => ({
            attempt: n,
            startedAt: at(n === 1 ? 10 : 70),
            durationMs: 250,
            outcome: "failure",
            statusCode: 500,
            error: "HTTP 500",
            responseExcerpt: "status 500"
          }))
        }
      ])
    })
  )
}

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url))
const appliedMigrations = pgSchema("drizzle").table("__drizzle_migrations", { id: serial("id"), hash: text("hash") })

const expectMigrated = Effect.gen(function* () {
  const { db } = yield* Database.Database
  const applied = yield* Effect.promise(() => db.select({ hash: appliedMigrations.hash }).from(appliedMigrations))
  expect(applied.map((m) => m.hash)).toEqual(readMigrationFiles({ migrationsFolder }).map((m) => m.hash))
  for (const table of [
    HistorySchema.destinations,
    HistorySchema.events,
    HistorySchema.deliveries,
    HistorySchema.attempts,
    HistorySchema.healthTransitions,
    HistorySchema.auditLog
  ]) {
    yield* Effect.promise(() => db.select({ n: count() }).from(table))
  }
})

/** Tests that need the database itself, beside the store. */
const databaseSuite = (it: Vitest.MethodsNonLive<HistoryStore | Database.Database>) => {
  it.effect("applies the checked-in migrations to a fresh database", () => expectMigrated)

  it.effect("reads settings stored by an older version over today's defaults", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const { db } = yield* Database.Database
      const created = destination(uid("dest"))
      yield* store.insertDestination(created)
      yield* Effect.promise(() =>
        db
          .update(HistorySchema.destinations)
          .set({ settings: { ordering: "none", retry: { ...created.retry, maxAttempts: 7 } } })
          .where(eq(HistorySchema.destinations.id, created.id))
      )
      expect(Option.getOrThrow(yield* store.getDestination(created.id))).toEqual({
        ...created,
        ordering: "none",
        retry: { ...created.retry, maxAttempts: 7 }
      })
    })
  )
}

layer(layerMemory)("in-memory HistoryStore", historySuite)

layer(PgHistoryStore.layer.pipe(Layer.provideMerge(Database.layerPglite(undefined))))("PgHistoryStore on PGlite", (it) => {
  historySuite(it)
  databaseSuite(it)
})

const onThrowawayPostgres = Layer.unwrapScoped(Effect.map(throwawayDatabase, Database.layerPostgres))

layer(PgHistoryStore.layer.pipe(Layer.provideMerge(onThrowawayPostgres)))("PgHistoryStore on Postgres", (it) => {
  historySuite(it)
  databaseSuite(it)
})

layer(Layer.empty)("Database", (it) => {
  it.scoped("migrates once when several brokers start together on one Postgres", () =>
    Effect.gen(function* () {
      const url = yield* throwawayDatabase
      const brokers = yield* Effect.all(
        Array.from({ length: 3 }, () => Layer.build(Database.layerPostgres(url))),
        { concurrency: "unbounded" }
      )
      for (const context of brokers) yield* Effect.provide(expectMigrated, context)
    })
  )

  it.effect("fails with DatabaseUnavailable naming the URL without its password", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Layer.build(Database.layerPostgres("postgres://sluice:s3cret@127.0.0.1:1/sluice")).pipe(Effect.scoped)
      )
      expect(error._tag).toBe("DatabaseUnavailable")
      expect(error.message).toContain("postgres://sluice:***@127.0.0.1:1/sluice")
      expect(error.message).not.toContain("s3cret")
    })
  )

  it.scoped("keeps an embedded database in a directory it creates", () =>
    Effect.gen(function* () {
      const root = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-pglite-"))),
        (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
      )
      const dataDir = join(root, "nested", "pglite")
      const open = PgHistoryStore.layer.pipe(Layer.provide(Database.layerPglite(dataDir)))
      const created = destination(uid("dest"))
      yield* HistoryStore.pipe(
        Effect.flatMap((store) => store.insertDestination(created)),
        Effect.provide(open)
      )
      const reopened = yield* HistoryStore.pipe(
        Effect.flatMap((store) => store.getDestination(created.id)),
        Effect.provide(open)
      )
      expect(reopened).toEqual(Option.some(created))
    })
  )
})
