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
import * as SecretBox from "../src/SecretBox.js"

/** The store with a box of its own: secrets sealed as in a broker. */
const store = PgHistoryStore.layer.pipe(Layer.provide(SecretBox.layerKey(randomBytes(32))))

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
  duplicateOf: null,
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

  it.effect("marks a later event with a used idempotency key as a duplicate of the first, in any batch", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const idempotencyKey = uid("idem")
      const first = storedEvent(uid("evt"), { idempotencyKey })
      const sameBatch = storedEvent(uid("evt"), { idempotencyKey })
      const muchLater = storedEvent(uid("evt"), { idempotencyKey })
      yield* store.insertEvents([first, sameBatch])
      yield* store.insertEvents([muchLater])
      yield* store.insertEvents([first, muchLater])
      const duplicateOf = (id: string) =>
        store.getEvent(id).pipe(Effect.map((d) => Option.getOrThrow(d).event.duplicateOf))
      expect(yield* duplicateOf(first.id)).toBe(null)
      expect(yield* duplicateOf(sameBatch.id)).toBe(first.id)
      expect(yield* duplicateOf(muchLater.id)).toBe(first.id)
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

  it.effect("counts per type the events of a stream range a destination has no delivery of", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const destination = uid("dst")
      // A range of its own: other tests share the database and its stream sequences.
      const firstSeq = 1_000_000 + Math.floor(Math.random() * 1_000_000_000)
      const ids = [1, 2, 3, 4, 5, 6].map(() => uid("evt"))
      yield* store.insertEvents([
        storedEvent(ids[0]!, { streamSeq: firstSeq + 1, receivedAt: at(1) }), // before `since`
        storedEvent(ids[1]!, { streamSeq: firstSeq + 2, receivedAt: at(10) }),
        storedEvent(ids[2]!, { streamSeq: firstSeq + 3, receivedAt: at(12) }), // delivered to the destination
        storedEvent(ids[3]!, { streamSeq: firstSeq + 4, receivedAt: at(14), type: "invoice.paid" }),
        storedEvent(ids[4]!, { streamSeq: firstSeq + 5, receivedAt: at(16) }), // only delivered elsewhere
        storedEvent(ids[5]!, { streamSeq: firstSeq + 6, receivedAt: at(18) }) // past the range
      ])
      yield* store.applyFacts([attempt(ids[2]!, destination, 1, 20, succeeded), attempt(ids[4]!, uid("other"), 1, 20, succeeded)])

      const counts = yield* store.countTypesBetween(firstSeq, firstSeq + 6, at(5), destination)
      expect(counts.toSorted((a, b) => a.type.localeCompare(b.type))).toEqual([
        { type: "invoice.paid", count: 1, firstAt: at(14), lastAt: at(14) },
        { type: "order.created", count: 2, firstAt: at(10), lastAt: at(16) }
      ])
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

/** An attempt of its own event, for the stats: when it started, how long it took, how it ended. */
const timedAttempt = (destinationId: string, startedAtMs: number, durationMs: number, outcome: History.AttemptOutcome) => {
  const eventId = uid("evt")
  return new AttemptFinished({
    id: `${eventId}:${destinationId}:1`,
    eventId,
    destinationId,
    attempt: 1,
    startedAt: new Date(startedAtMs).toISOString(),
    durationMs,
    outcome,
    statusCode: outcome === "success" ? 200 : 500,
    error: null,
    responseExcerpt: null,
    state: outcome === "success" ? "completed" : "errored",
    nextAttemptAt: null
  })
}

/** Every page of a list, following the cursors from the first. */
const allPages = <A>(
  page: (cursor: string | undefined) => Effect.Effect<{ readonly items: ReadonlyArray<A>; readonly nextCursor: string | null }, unknown>
) =>
  Effect.gen(function* () {
    const pages: Array<ReadonlyArray<A>> = []
    let cursor: string | undefined
    do {
      const next = yield* page(cursor)
      pages.push(next.items)
      cursor = next.nextCursor ?? undefined
    } while (cursor !== undefined)
    return pages
  })

/** The read side of the admin API; every implementation must pass it. */
const listingSuite = (it: Vitest.MethodsNonLive<HistoryStore>) => {
  it.effect("lists events newest first by each filter, in pages without gaps or duplicates", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const scope = uid("list")
      const orders = { ...destination(uid("orders")), subscriptions: [`${scope}.order.*`] as const }
      const invoices = { ...destination(uid("invoices")), subscriptions: [`${scope}.invoice.>`] as const }
      yield* store.insertDestination(orders)
      yield* store.insertDestination(invoices)
      const event = (n: number, type: string, key: string, second: number) =>
        storedEvent(`${scope}-${n}`, { type: `${scope}.${type}`, key, receivedAt: at(second), streamSeq: n })
      const [e1, e2, e3, e4, e5] = [
        event(1, "order.created", "k1", 10),
        event(2, "order.paid", "k2", 20),
        event(3, "invoice.sent.late", "k1", 30),
        event(4, "order.created", "k1", 40),
        event(5, "order.created", "k3", 40)
      ]
      yield* store.insertEvents([e1!, e2!, e3!, e4!, e5!])
      yield* store.applyFacts([
        attempt(e1!.id, orders.id, 1, 11, succeeded),
        attempt(e2!.id, orders.id, 1, 21, failed),
        attempt(e5!.id, orders.id, 1, 41, { state: "dead", statusCode: 422, error: "HTTP 422" })
      ])

      const ids = (query: Partial<History.EventQuery>) =>
        store.listEvents({ type: `${scope}.>`, ...query }).pipe(Effect.map((page) => page.items.map((e) => e.id)))
      const [id1, id2, id3, id4, id5] = [e1!.id, e2!.id, e3!.id, e4!.id, e5!.id]
      expect(yield* ids({})).toEqual([id5, id4, id3, id2, id1])
      expect(yield* ids({ type: `${scope}.order.created` })).toEqual([id5, id4, id1])
      expect(yield* ids({ type: `${scope}.order.*` })).toEqual([id5, id4, id2, id1])
      expect(yield* ids({ type: `${scope}.*` })).toEqual([])
      expect(yield* ids({ type: `*.invoice.>` })).toEqual([id3])
      expect(yield* ids({ key: "k1" })).toEqual([id4, id3, id1])
      expect(yield* ids({ since: at(20), until: at(40) })).toEqual([id3, id2])
      expect(yield* ids({ destination: orders.id })).toEqual([id5, id4, id2, id1])
      expect(yield* ids({ destination: invoices.id })).toEqual([id3])
      expect(yield* ids({ state: "completed" })).toEqual([id1])
      expect(yield* ids({ state: "queued" })).toEqual([id4, id3])
      expect(yield* ids({ state: "queued", destination: orders.id })).toEqual([id4])
      expect(yield* ids({ state: "dead", destination: invoices.id })).toEqual([])
      expect(yield* ids({ type: `${scope}.order.created`, state: "dead" })).toEqual([id5])

      const [first] = (yield* store.listEvents({ type: `${scope}.order.created`, key: "k3" })).items
      expect(first).toEqual({
        id: id5,
        type: e5!.type,
        key: "k3",
        version: 3,
        occurredAt: e5!.occurredAt,
        receivedAt: at(40),
        duplicateOf: null,
        deliveries: [{ destinationId: orders.id, state: "dead", attempts: 1, updatedAt: new Date(base + 41_250).toISOString() }]
      })
      const queued = (yield* store.listEvents({ type: `${scope}.>`, key: "k1", until: at(41), since: at(40) })).items
      expect(queued.map((e) => e.deliveries)).toEqual([[{ destinationId: orders.id, state: "queued", attempts: 0, updatedAt: at(40) }]])

      const pages = yield* allPages((cursor) => store.listEvents({ type: `${scope}.>`, limit: 2, cursor }))
      expect(pages.map((page) => page.map((e) => e.id))).toEqual([[id5, id4], [id3, id2], [id1]])
      const last = yield* store.listEvents({ type: `${scope}.>`, limit: 5 })
      expect(last.nextCursor).toBe(null)
    })
  )

  it.effect("refuses a cursor it did not hand out", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const forged = Buffer.from("yesterday|evt-1").toString("base64url")
      for (const cursor of ["not a cursor", forged, ""]) {
        expect((yield* Effect.flip(store.listEvents({ cursor })))._tag).toBe("InvalidCursor")
        expect((yield* Effect.flip(store.listAudit({ cursor })))._tag).toBe("InvalidCursor")
      }
    })
  )

  it.effect("reads a destination's health transitions newest first", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const destinationId = uid("dest")
      const transition = (n: number, from: "active" | "down" | "recovering", to: "active" | "down" | "recovering", second: number) =>
        new HealthChanged({ id: `${destinationId}-${n}`, destinationId, from, to, reason: `reason ${n}`, at: at(second) })
      const facts = [
        transition(1, "active", "down", 10),
        transition(2, "down", "recovering", 20),
        transition(3, "recovering", "active", 30),
        new HealthChanged({ id: uid("health"), destinationId: uid("other"), from: "active", to: "down", reason: "x", at: at(40) })
      ]
      yield* store.applyFacts(facts)
      yield* store.applyFacts(facts)
      expect(yield* store.healthTimeline(destinationId, 10)).toEqual([
        { id: `${destinationId}-3`, from: "recovering", to: "active", reason: "reason 3", at: at(30) },
        { id: `${destinationId}-2`, from: "down", to: "recovering", reason: "reason 2", at: at(20) },
        { id: `${destinationId}-1`, from: "active", to: "down", reason: "reason 1", at: at(10) }
      ])
      expect((yield* store.healthTimeline(destinationId, 2)).map((t) => t.id)).toEqual([`${destinationId}-3`, `${destinationId}-2`])
      expect(yield* store.healthTimeline(uid("none"), 10)).toEqual([])
    })
  )

  it.effect("lists the audit log newest first, of one destination, in pages", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const destinationId = uid("dest")
      const entry = (n: number, second: number, forDestination: string | null, details: unknown) =>
        new OperatorActed({
          id: `${destinationId}-${n}`,
          at: at(second),
          actor: "admin",
          action: `action.${n}`,
          destinationId: forDestination,
          details
        })
      const facts = [
        entry(1, 10, destinationId, { note: "one" }),
        entry(2, 20, destinationId, null),
        entry(3, 20, destinationId, ["three"]),
        entry(4, 25, null, { global: true }),
        entry(5, 30, uid("other"), null)
      ]
      yield* store.applyFacts(facts)
      yield* store.applyFacts(facts)
      const pages = yield* allPages((cursor) => store.listAudit({ destination: destinationId, limit: 2, cursor }))
      expect(pages).toEqual([
        [
          { id: `${destinationId}-3`, at: at(20), actor: "admin", action: "action.3", destinationId, details: ["three"] },
          { id: `${destinationId}-2`, at: at(20), actor: "admin", action: "action.2", destinationId, details: null }
        ],
        [{ id: `${destinationId}-1`, at: at(10), actor: "admin", action: "action.1", destinationId, details: { note: "one" } }]
      ])
      expect((yield* store.listAudit({})).items).toContainEqual({
        id: `${destinationId}-4`,
        at: at(25),
        actor: "admin",
        action: "action.4",
        destinationId: null,
        details: { global: true }
      })
    })
  )

  it.effect("counts deliveries by state, takes latency percentiles over recent windows and attempts per minute", () =>
    Effect.gen(function* () {
      const store = yield* HistoryStore
      const destinationId = uid("dest")
      const now = base + 2 * 86_400_000 + 30_000
      const ago = (ms: number) => now - ms
      yield* store.applyFacts([
        // The last 5 minutes: four successes, a failure and a throttled answer.
        ...[100, 200, 300, 400].map((ms, i) => timedAttempt(destinationId, ago(10_000 + i * 1_000), ms, "success")),
        timedAttempt(destinationId, ago(15_000), 5_000, "failure"),
        timedAttempt(destinationId, ago(16_000), 10, "throttled"),
        // Within the hour, within the day, and older than a day.
        timedAttempt(destinationId, ago(30 * 60_000), 1_000, "success"),
        timedAttempt(destinationId, ago(3 * 3_600_000), 2_000, "success"),
        timedAttempt(destinationId, ago(25 * 3_600_000), 9_000, "success"),
        // Another destination's attempt counts for nothing here.
        timedAttempt(uid("other"), ago(1_000), 50, "success")
      ])
      yield* store.applyFacts([canceled(uid("evt"), destinationId, 5, "evt-newer")])

      const stats = yield* store.deliveryStats(destinationId, now)
      expect(stats.states).toEqual({
        queued: 0,
        processing: 0,
        completed: 7,
        errored: 2,
        dead: 0,
        canceled: 1,
        ignored: 0,
        duplicate: 0,
        disabled: 0
      })
      const [fiveMinutes, hour, day] = stats.latency
      expect(fiveMinutes).toMatchObject({ window: "5m", count: 4, p50Ms: 250 })
      expect(fiveMinutes!.p99Ms).toBeCloseTo(397, 6)
      expect(hour).toMatchObject({ window: "1h", count: 5, p50Ms: 300 })
      expect(hour!.p99Ms).toBeCloseTo(976, 6)
      expect(day).toMatchObject({ window: "24h", count: 6, p50Ms: 350 })
      expect(day!.p99Ms).toBeCloseTo(1950, 6)

      expect(stats.throughput).toHaveLength(60)
      const currentMinute = now - (now % 60_000)
      expect(stats.throughput[0]!.at).toBe(new Date(currentMinute - 59 * 60_000).toISOString())
      expect(stats.throughput[59]).toEqual({ at: new Date(currentMinute).toISOString(), succeeded: 4, failed: 2 })
      expect(stats.throughput[29]).toEqual({ at: new Date(currentMinute - 30 * 60_000).toISOString(), succeeded: 1, failed: 0 })
      const counted = stats.throughput.reduce((sum, p) => sum + p.succeeded + p.failed, 0)
      expect(counted).toBe(7)

      const idle = yield* store.deliveryStats(uid("idle"), now)
      expect(idle.latency).toEqual([
        { window: "5m", count: 0, p50Ms: null, p99Ms: null },
        { window: "1h", count: 0, p50Ms: null, p99Ms: null },
        { window: "24h", count: 0, p50Ms: null, p99Ms: null }
      ])
      expect(idle.throughput.every((p) => p.succeeded === 0 && p.failed === 0)).toBe(true)
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

layer(layerMemory)("in-memory HistoryStore", (it) => {
  historySuite(it)
  listingSuite(it)
})

layer(store.pipe(Layer.provideMerge(Database.layerPglite(undefined))))("PgHistoryStore on PGlite", (it) => {
  historySuite(it)
  listingSuite(it)
  databaseSuite(it)
})

const onThrowawayPostgres = Layer.unwrapScoped(Effect.map(throwawayDatabase, Database.layerPostgres))

layer(store.pipe(Layer.provideMerge(onThrowawayPostgres)))("PgHistoryStore on Postgres", (it) => {
  historySuite(it)
  listingSuite(it)
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
      const open = store.pipe(Layer.provide(Database.layerPglite(dataDir)))
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
