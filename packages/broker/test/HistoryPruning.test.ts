/**
 * History retention: `HistoryStore.prune` on every store (in memory, PGlite, a throwaway
 * Postgres — a fresh one per test, since pruning sweeps the whole history), the
 * `SLUICE_HISTORY_RETENTION` setting, and the `HistoryPruner` schedule under the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import type { History, States } from "@sluice/protocol"
import { inArray } from "drizzle-orm"
import { Duration, Effect, Layer, Option, Queue, TestClock } from "effect"
import { randomBytes } from "node:crypto"
import { throwawayDatabase } from "../../../test/helpers/postgres.js"
import * as BrokerConfig from "../src/BrokerConfig.js"
import * as Database from "../src/Database.js"
import { AttemptFinished, DeliveryChanged, HealthChanged, OperatorActed } from "../src/Fact.js"
import * as HistoryPruner from "../src/HistoryPruner.js"
import * as HistorySchema from "../src/HistorySchema.js"
import { HistoryStore, HistoryUnavailable, layerMemory } from "../src/HistoryStore.js"
import * as PgHistoryStore from "../src/PgHistoryStore.js"
import * as SecretBox from "../src/SecretBox.js"

const store = PgHistoryStore.layer.pipe(Layer.provide(SecretBox.layerKey(randomBytes(32))))

const DAY = 86_400_000
const start = Date.parse("2026-10-01T00:00:00.000Z")
/** Everything at `start` + seconds is older than the cutoff; `recent` is newer. */
const cutoff = new Date(start + 10 * DAY)
const recent = start + 20 * DAY
const old = (seconds: number) => start + seconds * 1000
const iso = (ms: number) => new Date(ms).toISOString()

const event = (id: string, receivedAt: number, idempotencyKey: string | null = null): History.StoredEvent => ({
  id,
  type: "order.created",
  key: null,
  version: null,
  idempotencyKey,
  occurredAt: iso(receivedAt),
  receivedAt: iso(receivedAt),
  streamSeq: 1,
  data: { n: 1 },
  headers: null,
  duplicateOf: null
})

const attempted = (eventId: string, destinationId: string, n: number, startedAt: number, state: "completed" | "errored" | "dead") =>
  new AttemptFinished({
    id: `${eventId}:${destinationId}:${n}`,
    eventId,
    destinationId,
    attempt: n,
    startedAt: iso(startedAt),
    durationMs: 100,
    outcome: state === "completed" ? "success" : "failure",
    statusCode: state === "completed" ? 200 : 500,
    error: state === "completed" ? null : "HTTP 500",
    responseExcerpt: null,
    state,
    nextAttemptAt: state === "errored" ? iso(startedAt + 60_000) : null
  })

const changed = (eventId: string, destinationId: string, state: States.DeliveryState, at: number) =>
  new DeliveryChanged({
    id: `${eventId}:${destinationId}:${state}`,
    eventId,
    destinationId,
    state,
    at: iso(at),
    reason: null,
    canceledBy: null,
    duplicateOf: null,
    ignoredReason: null
  })

const healthChanged = (id: string, destinationId: string, at: number) =>
  new HealthChanged({ id, destinationId, from: "active", to: "down", reason: "5 failures in a row", at: iso(at) })

const audited = (id: string, at: number) =>
  new OperatorActed({ id, at: iso(at), actor: "admin", action: "destination.paused", destinationId: "d1", details: null })

/** Attempts of the destination in the hour around `start`, where every old attempt is. */
const oldAttempts = (destinationId: string) =>
  HistoryStore.pipe(
    Effect.flatMap((store) => store.deliveryStats(destinationId, old(30 * 60))),
    Effect.map((stats) => stats.throughput.reduce((sum, p) => sum + p.succeeded + p.failed, 0))
  )

const isStored = (id: string) =>
  HistoryStore.pipe(
    Effect.flatMap((store) => store.getEvent(id)),
    Effect.map(Option.isSome)
  )

/** The contract of `prune`; each test gets a history of its own. */
const pruneSuite = (fresh: () => Layer.Layer<HistoryStore, unknown>) => {
  it.effect("removes settled events from before the cutoff with their deliveries, attempts and keys; keeps recent and in-flight ones", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      yield* store.insertEvents([
        event("settled", old(1), "key-settled"),
        event("dead", old(2)),
        event("canceled", old(3)),
        event("unattempted", old(4)),
        event("errored", old(5), "key-kept"),
        event("queued", old(6)),
        event("processing", old(7)),
        event("recent", recent)
      ])
      yield* store.applyFacts([
        attempted("settled", "d1", 1, old(10), "errored"),
        attempted("settled", "d1", 2, old(70), "completed"),
        attempted("settled", "d2", 1, old(10), "completed"),
        attempted("dead", "d1", 1, old(20), "dead"),
        changed("canceled", "d1", "canceled", old(30)),
        attempted("errored", "d1", 1, old(40), "completed"),
        attempted("errored", "d2", 1, old(40), "errored"),
        changed("queued", "d1", "queued", old(50)),
        changed("processing", "d1", "processing", old(50)),
        attempted("recent", "d1", 1, recent, "completed")
      ])
      expect(yield* oldAttempts("d1")).toBe(4)
      expect(yield* oldAttempts("d2")).toBe(2)

      expect(yield* store.prune(cutoff)).toEqual({ events: 4, healthTransitions: 0, auditEntries: 0 })

      for (const id of ["settled", "dead", "canceled", "unattempted"]) expect(yield* isStored(id)).toBe(false)
      for (const id of ["queued", "processing", "recent"]) expect(yield* isStored(id)).toBe(true)
      const inFlight = Option.getOrThrow(yield* store.getEvent("errored"))
      expect(inFlight.deliveries.map((d) => [d.destinationId, d.state, d.attemptLog.length])).toEqual([
        ["d1", "completed", 1],
        ["d2", "errored", 1]
      ])
      const states = (yield* store.deliveryStats("d1", recent)).states
      expect(states).toMatchObject({ completed: 2, errored: 0, dead: 0, canceled: 0, queued: 1, processing: 1 })
      expect(yield* oldAttempts("d1")).toBe(1)
      expect(yield* oldAttempts("d2")).toBe(1)

      // The pruned event's idempotency key is free again; the kept one's still marks repeats.
      yield* store.insertEvents([event("reuses-settled", recent + 1, "key-settled"), event("repeats-kept", recent + 2, "key-kept")])
      const duplicateOf = (id: string) => store.getEvent(id).pipe(Effect.map((d) => Option.getOrThrow(d).event.duplicateOf))
      expect(yield* duplicateOf("reuses-settled")).toBe(null)
      expect(yield* duplicateOf("repeats-kept")).toBe("errored")

      expect(yield* store.prune(cutoff)).toEqual({ events: 0, healthTransitions: 0, auditEntries: 0 })
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("removes health transitions and audit entries from before the cutoff", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      yield* store.applyFacts([
        healthChanged("h-old-1", "d1", old(1)),
        healthChanged("h-old-2", "d1", old(2)),
        healthChanged("h-recent", "d1", recent),
        audited("a-old-1", old(1)),
        audited("a-old-2", old(2)),
        audited("a-recent", recent)
      ])
      expect(yield* store.prune(cutoff)).toEqual({ events: 0, healthTransitions: 2, auditEntries: 2 })
      expect((yield* store.healthTimeline("d1", 10)).map((t) => t.id)).toEqual(["h-recent"])
      expect((yield* store.listAudit({})).items.map((entry) => entry.id)).toEqual(["a-recent"])
    }).pipe(Effect.provide(fresh()))
  )

  it.effect("works through more rows than one batch, past batches that keep in-flight events", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      // Two events per second, so a batch can end between events received at the same time.
      const ids = Array.from({ length: 12 }, (_, i) => `evt-${String(i).padStart(2, "0")}`)
      const inFlight = ids.filter((_, i) => i % 4 === 0)
      yield* store.insertEvents([...ids.map((id, i) => event(id, old(Math.floor(i / 2)))), event("recent", recent)])
      yield* store.applyFacts(ids.map((id) => attempted(id, "d1", 1, old(60), inFlight.includes(id) ? "errored" : "completed")))
      yield* store.applyFacts([
        ...Array.from({ length: 7 }, (_, i) => healthChanged(`h-${i}`, "d1", old(i))),
        ...Array.from({ length: 6 }, (_, i) => audited(`a-${i}`, old(i)))
      ])

      expect(yield* store.prune(cutoff, 3)).toEqual({ events: 9, healthTransitions: 7, auditEntries: 6 })
      const left = yield* store.listEvents({ limit: 100 })
      expect(left.items.map((e) => e.id).sort()).toEqual([...inFlight, "recent"].sort())
      expect(yield* store.healthTimeline("d1", 10)).toEqual([])
      expect((yield* store.listAudit({})).items).toEqual([])
    }).pipe(Effect.provide(fresh()))
  )
}

const rowsOf = (eventId: string) =>
  Effect.gen(function* () {
    const { db } = yield* Database.Database
    const ids = [eventId]
    return yield* Effect.promise(async () => ({
      deliveries: (await db.select().from(HistorySchema.deliveries).where(inArray(HistorySchema.deliveries.eventId, ids))).length,
      attempts: (await db.select().from(HistorySchema.attempts).where(inArray(HistorySchema.attempts.eventId, ids))).length,
      idempotencyKeys: (
        await db.select().from(HistorySchema.idempotencyKeys).where(inArray(HistorySchema.idempotencyKeys.eventId, ids))
      ).length
    }))
  })

/** Below the store's interface: nothing of a pruned event is left in any table. */
const databaseSuite = (fresh: () => Layer.Layer<HistoryStore | Database.Database, unknown>) => {
  it.effect("leaves no row of a pruned event behind", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      yield* store.insertEvents([event("pruned", old(1), "key-pruned"), event("kept", old(2), "key-kept")])
      yield* store.applyFacts([
        attempted("pruned", "d1", 1, old(10), "errored"),
        attempted("pruned", "d1", 2, old(70), "completed"),
        attempted("kept", "d1", 1, old(10), "errored")
      ])
      expect(yield* rowsOf("pruned")).toEqual({ deliveries: 1, attempts: 2, idempotencyKeys: 1 })
      yield* store.prune(cutoff)
      expect(yield* rowsOf("pruned")).toEqual({ deliveries: 0, attempts: 0, idempotencyKeys: 0 })
      expect(yield* rowsOf("kept")).toEqual({ deliveries: 1, attempts: 1, idempotencyKeys: 1 })
    }).pipe(Effect.provide(fresh()))
  )
}

describe("prune, in memory", () => pruneSuite(() => layerMemory))

const onPglite = () => store.pipe(Layer.provideMerge(Database.layerPglite(undefined)))

describe("prune, PgHistoryStore on PGlite", () => {
  pruneSuite(onPglite)
  databaseSuite(onPglite)
})

const onPostgres = () =>
  store.pipe(Layer.provideMerge(Layer.unwrapScoped(Effect.map(throwawayDatabase, Database.layerPostgres))))

describe("prune, PgHistoryStore on Postgres", () => {
  pruneSuite(onPostgres)
  databaseSuite(onPostgres)
})

describe("SLUICE_HISTORY_RETENTION", () => {
  const decode = (value?: string) =>
    BrokerConfig.fromEnvironment(value === undefined ? {} : { SLUICE_HISTORY_RETENTION: value }).pipe(
      Effect.map((settings) => settings.historyRetention)
    )

  it.effect("is a duration, 30 days by default, or forever", () =>
    Effect.gen(function* () {
      expect(yield* decode()).toEqual(Duration.days(30))
      expect(yield* decode("90 days")).toEqual(Duration.days(90))
      expect(yield* decode("forever")).toEqual(Duration.infinity)
    })
  )

  for (const value of ["soon", "0", "0 days", "-1 days", "off"]) {
    it.effect(`fails to decode ${JSON.stringify(value)}, naming the setting`, () =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(decode(value))
        expect(error.message).toContain("SLUICE_HISTORY_RETENTION")
        expect(error.message).toContain("forever")
      })
    )
  }
})

describe("HistoryPruner", () => {
  const settings = (historyRetention: Duration.Duration) => ({ historyRetention, streamMaxAge: Duration.days(7) })

  it("keeps history at least as long as the stream keeps events", () => {
    expect(HistoryPruner.retention(settings(Duration.days(30)))).toEqual(Option.some(Duration.days(30)))
    expect(HistoryPruner.retention(settings(Duration.days(1)))).toEqual(Option.some(Duration.days(7)))
    expect(HistoryPruner.retention(settings(Duration.infinity))).toEqual(Option.none())
  })

  /** The pruner over an in-memory store whose `prune` reports its cutoff (and fails when told to). */
  const startPruner = (historyRetention: Duration.Duration, failing = false) =>
    Effect.gen(function* () {
      const cutoffs = yield* Queue.unbounded<Date>()
      yield* Layer.build(
        HistoryPruner.layer.pipe(
          Layer.updateService(HistoryStore, (store) => ({
            ...store,
            prune: (olderThan: Date, batchSize?: number) =>
              Queue.offer(cutoffs, olderThan).pipe(
                Effect.zipRight(
                  failing ? Effect.fail(new HistoryUnavailable({ message: "database down" })) : store.prune(olderThan, batchSize)
                )
              )
          })),
          Layer.provide(layerMemory),
          Layer.provide(BrokerConfig.layer(settings(historyRetention)))
        )
      )
      return cutoffs
    })

  it.scoped("prunes shortly after start, then every period, what is older than the retention", () =>
    Effect.gen(function* () {
      const cutoffs = yield* startPruner(Duration.days(30))
      yield* TestClock.adjust(Duration.subtract(HistoryPruner.FIRST_RUN_AFTER, Duration.millis(1)))
      expect(yield* Queue.size(cutoffs)).toBe(0)
      yield* TestClock.adjust(Duration.millis(1))
      const first = Duration.toMillis(HistoryPruner.FIRST_RUN_AFTER)
      expect(yield* Queue.take(cutoffs)).toEqual(new Date(first - 30 * DAY))
      yield* TestClock.adjust(HistoryPruner.RUN_EVERY)
      expect(yield* Queue.take(cutoffs)).toEqual(new Date(first + Duration.toMillis(HistoryPruner.RUN_EVERY) - 30 * DAY))
    })
  )

  it.scoped("tries again at the next run after a failed one", () =>
    Effect.gen(function* () {
      const cutoffs = yield* startPruner(Duration.days(30), true)
      yield* TestClock.adjust(HistoryPruner.FIRST_RUN_AFTER)
      yield* Queue.take(cutoffs)
      yield* TestClock.adjust(HistoryPruner.RUN_EVERY)
      yield* Queue.take(cutoffs)
    })
  )

  it.scoped("never prunes when the history is kept forever", () =>
    Effect.gen(function* () {
      const cutoffs = yield* startPruner(Duration.infinity)
      yield* TestClock.adjust(Duration.sum(HistoryPruner.FIRST_RUN_AFTER, Duration.times(HistoryPruner.RUN_EVERY, 10)))
      expect(yield* Queue.size(cutoffs)).toBe(0)
    })
  )
})
