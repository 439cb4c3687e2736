/**
 * The transactional outbox against real Postgres and a real nats-server: what a producer
 * commits is published once under its row id, what it rolls back never is, with either
 * Drizzle driver; several relays share the table without publishing a row twice or a key
 * out of order; rows wait while NATS is down and drain in order when it is back; sent rows
 * are deleted after the retention.
 */
import { assert, describe, expect, it, layer } from "@effect/vitest"
import { connect as connectNats } from "@nats-io/transport-node"
import { Envelope, Subjects } from "@sluice/protocol"
import { connect, createOutbox, InvalidEnvelope, OutboxRelay, OutboxUnavailable, startOutboxRelay } from "@sluice/sdk"
import type { Outbox } from "@sluice/sdk"
import { sql } from "drizzle-orm"
import { drizzle as drizzleNodePg } from "drizzle-orm/node-postgres"
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core"
import { integer, pgTable, text } from "drizzle-orm/pg-core"
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js"
import type { Scope } from "effect"
import { Context, Effect, Either, Layer } from "effect"
import pg from "pg"
import postgres from "postgres"
import { ensureStreams } from "../../packages/broker/src/Streams.js"
import { withJsm } from "../helpers/inspect.js"
import { NatsFixture, tempNatsServer } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { waitForEffect } from "../helpers/waitFor.js"

/** The producer's own data, written in the same transactions as its events. */
const orders = pgTable("orders", { id: text("id").primaryKey(), total: integer("total").notNull() })

type Db = PgDatabase<PgQueryResultHKT>

/** Drizzle over each driver a producer may use, closed with the scope. */
const drivers: Record<"postgres.js" | "node-postgres", (url: string) => Effect.Effect<Db, never, Scope.Scope>> = {
  "postgres.js": (url) =>
    Effect.acquireRelease(
      Effect.sync(() => postgres(url, { max: 4, onnotice: () => {} })),
      (client) => Effect.promise(() => client.end({ timeout: 5 }))
    ).pipe(Effect.map((client) => drizzlePostgresJs({ client }))),
  "node-postgres": (url) =>
    Effect.acquireRelease(
      Effect.sync(() => new pg.Pool({ connectionString: url, max: 4 })),
      (pool) => Effect.promise(() => pool.end())
    ).pipe(Effect.map((client) => drizzleNodePg({ client })))
}

interface Producer {
  readonly url: string
  readonly db: Db
  readonly outbox: Outbox.Outbox
  /** A connection of the test's own, to look at the table. */
  readonly inspector: postgres.Sql
  /** The outbox table as the relay leaves it, oldest row first. */
  readonly rows: Effect.Effect<ReadonlyArray<OutboxRow>>
}

interface OutboxRow {
  readonly id: string
  readonly key: string | null
  readonly sent: boolean
  readonly attempts: number
  readonly lastError: string | null
}

/** A throwaway producer database with the outbox migrated (twice: it must be idempotent) and an orders table. */
const producer = (driver: keyof typeof drivers = "postgres.js") =>
  Effect.gen(function* () {
    const url = yield* throwawayDatabase
    const db = yield* drivers[driver](url)
    const outbox = createOutbox(db)
    yield* Effect.promise(() => outbox.migrate())
    yield* Effect.promise(() => outbox.migrate())
    yield* Effect.promise(() => db.execute(sql`CREATE TABLE orders (id text PRIMARY KEY, total integer NOT NULL)`))
    const inspector = yield* Effect.acquireRelease(
      Effect.sync(() => postgres(url, { max: 1, onnotice: () => {} })),
      (client) => Effect.promise(() => client.end({ timeout: 5 }))
    )
    const rows = Effect.promise(
      () => inspector<Array<OutboxRow>>`
        SELECT id, key, sent_at IS NOT NULL AS sent, attempts, last_error AS "lastError"
        FROM sluice_outbox ORDER BY seq`
    )
    return { url, db, outbox, inspector, rows } satisfies Producer
  })

/** Commits an order and its event together; resolves with the event id. */
const placeOrder = (p: Producer, id: string, total: number) =>
  Effect.promise(() =>
    p.db.transaction(async (tx) => {
      await tx.insert(orders).values({ id, total })
      return p.outbox.enqueue(tx, { type: "order.placed", key: id, version: 1, data: { id, total } })
    })
  )

/** A relay for the rest of the scope. */
const relay = (p: Producer, natsUrl: string, options: Partial<OutboxRelay.RelayOptions> = {}) =>
  Layer.build(OutboxRelay.layer({ databaseUrl: p.url, servers: natsUrl, pollInterval: "200 millis", ...options }))

const allSent = (p: Producer, count: number) =>
  waitForEffect(
    p.rows.pipe(Effect.map((rows) => rows.length === count && rows.every((row) => row.sent))),
    { description: `${count} outbox rows sent`, timeoutMs: 30_000, intervalMs: 50 }
  )

interface StoredEvent {
  readonly seq: number
  readonly subject: string
  readonly msgId: string | undefined
  readonly envelope: Envelope.Envelope
}

/** Every event in SLUICE_EVENTS, in stream order. */
const storedEvents = (natsUrl: string) =>
  withJsm(natsUrl, async (jsm) => {
    const { state } = await jsm.streams.info(Subjects.EVENTS_STREAM)
    const events: Array<StoredEvent> = []
    for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
      const stored = await jsm.streams.getMessage(Subjects.EVENTS_STREAM, { seq })
      if (stored === null) continue
      events.push({
        seq,
        subject: stored.subject,
        msgId: stored.header?.get(Subjects.Headers.msgId),
        envelope: Either.getOrThrow(Envelope.decodeEnvelope(stored.string()))
      })
    }
    return events
  })

/** The stored events with these ids, in stream order. */
const storedWithIds = (natsUrl: string, ids: Iterable<string>) =>
  storedEvents(natsUrl).pipe(
    Effect.map((events) => {
      const wanted = new Set(ids)
      return events.filter((event) => wanted.has(event.envelope.id))
    })
  )

/**
 * Every message published on the event subjects, seen by a plain NATS subscriber: unlike
 * the stream, it also sees copies JetStream dropped as duplicates.
 */
const publishedMessages = (natsUrl: string) =>
  Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      Effect.promise(() => connectNats({ servers: natsUrl })),
      (nc) => Effect.promise(() => nc.close())
    )
    const seen: Array<{ readonly msgId: string | undefined; readonly envelope: Envelope.Envelope }> = []
    nc.subscribe(Subjects.EVENTS_WILDCARD, {
      callback: (_error, msg) => {
        seen.push({
          msgId: msg.headers?.get(Subjects.Headers.msgId),
          envelope: Either.getOrThrow(Envelope.decodeEnvelope(msg.string()))
        })
      }
    })
    yield* Effect.promise(() => nc.flush())
    /** What arrived so far, after a round trip so that nothing routed to us earlier is still on the way. */
    return Effect.promise(() => nc.flush()).pipe(Effect.map(() => [...seen]))
  })

/** Groups events by key (in the given order) and returns each key's `data.n` sequence. */
const sequencesByKey = (events: ReadonlyArray<Envelope.Envelope>) => {
  const byKey = new Map<string, Array<number>>()
  for (const event of events) {
    if (event.key === undefined) continue
    const list = byKey.get(event.key) ?? []
    list.push((event.data as { n: number }).n)
    byKey.set(event.key, list)
  }
  return byKey
}

/** The file's nats-server with the streams the broker would create. */
const natsWithStreams = Layer.tap(NatsFixture.layer, (context) =>
  withJsm(Context.get(context, NatsFixture).url, (jsm) => ensureStreams(jsm))
)

layer(natsWithStreams, { excludeTestServices: true })("outbox", (it) => {
  for (const driver of ["postgres.js", "node-postgres"] as const) {
    describe(driver, () => {
      it.scoped("publishes a committed event once, under its row id, woken by NOTIFY", () =>
        Effect.gen(function* () {
          const nats = yield* NatsFixture
          const p = yield* producer(driver)
          // An hour between polls: once the relay has handled a first event and gone idle, only
          // the insert trigger's notification can wake it for the next one in time.
          yield* relay(p, nats.url, { pollInterval: "1 hour" })
          const first = yield* placeOrder(p, "order-0", 1)
          yield* allSent(p, 1)

          const id = yield* placeOrder(p, "order-1", 42)
          yield* allSent(p, 2)

          const rows = yield* p.rows
          expect(rows).toEqual([
            { id: first, key: "order-0", sent: true, attempts: 1, lastError: null },
            { id, key: "order-1", sent: true, attempts: 1, lastError: null }
          ])
          const stored = yield* storedWithIds(nats.url, [id])
          expect(stored).toHaveLength(1)
          expect(stored[0]!.subject).toBe(Subjects.eventSubject("order.placed"))
          expect(stored[0]!.msgId).toBe(id)
          expect(stored[0]!.envelope).toMatchObject({
            id,
            type: "order.placed",
            key: "order-1",
            version: 1,
            data: { id: "order-1", total: 42 }
          })
        })
      )

      it.scoped("publishes nothing for a rolled-back transaction", () =>
        Effect.gen(function* () {
          const nats = yield* NatsFixture
          const p = yield* producer(driver)
          yield* relay(p, nats.url)

          let rolledBackId: string | undefined
          const rollback = yield* Effect.promise(() =>
            p.db
              .transaction(async (tx) => {
                await tx.insert(orders).values({ id: "order-2", total: 7 })
                rolledBackId = await p.outbox.enqueue(tx, { type: "order.placed", key: "order-2", data: { total: 7 } })
                throw new Error("payment declined")
              })
              .then(
                () => "committed",
                (error: Error) => error.message
              )
          )
          expect(rollback).toBe("payment declined")
          assert(rolledBackId !== undefined)

          // A later commit on the same key is published: the relay has looked past where the rolled-back row would be.
          const committedId = yield* placeOrder(p, "order-3", 9)
          yield* allSent(p, 1)

          expect((yield* p.rows).map((row) => row.id)).toEqual([committedId])
          const stored = yield* storedWithIds(nats.url, [rolledBackId, committedId])
          expect(stored.map((event) => event.envelope.id)).toEqual([committedId])
          const orderIds = yield* Effect.promise(() => p.db.select({ id: orders.id }).from(orders))
          expect(orderIds).toEqual([{ id: "order-3" }])
        })
      )
    })
  }

  it.scoped("enqueue validates like publish and fails the transaction, naming the field", () =>
    Effect.gen(function* () {
      const p = yield* producer()
      const attempt = (event: Parameters<Outbox.Outbox["enqueue"]>[1]) =>
        Effect.promise(() =>
          p.db
            .transaction(async (tx) => {
              await tx.insert(orders).values({ id: "order-4", total: 1 })
              await p.outbox.enqueue(tx, event)
            })
            .then(
              () => undefined,
              (error: unknown) => error
            )
        )

      const badType = yield* attempt({ type: "order placed" })
      assert(badType instanceof InvalidEnvelope)
      expect(badType.field).toBe("type")
      const badKey = yield* attempt({ type: "order.placed", key: "line\nbreak" })
      assert(badKey instanceof InvalidEnvelope)
      expect(badKey.field).toBe("key")
      // What an untyped caller might send: not a fresh literal, so TypeScript allows the extra field.
      const withExtraField = { type: "order.placed", tenant: "x" }
      const extra = yield* attempt(withExtraField)
      assert(extra instanceof InvalidEnvelope)

      expect(yield* p.rows).toEqual([])
      expect(yield* Effect.promise(() => p.db.select().from(orders))).toEqual([])
    })
  )

  it.scoped("enqueuing an id already in the outbox stores one row, as JetStream stores one event", () =>
    Effect.gen(function* () {
      const p = yield* producer()
      const event = { id: "evt-fixed-1", type: "invoice.issued", data: { n: 1 } }
      const first = yield* Effect.promise(() => p.db.transaction((tx) => p.outbox.enqueue(tx, event)))
      const second = yield* Effect.promise(() => p.db.transaction((tx) => p.outbox.enqueue(tx, { ...event, data: { n: 2 } })))
      expect([first, second]).toEqual(["evt-fixed-1", "evt-fixed-1"])
      expect((yield* p.rows).map((row) => row.id)).toEqual(["evt-fixed-1"])
    })
  )

  it.scoped("a row published before the relay could mark it sent is published again and stored once", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const p = yield* producer()
      const published = yield* publishedMessages(nats.url)
      const id = yield* placeOrder(p, "order-5", 5)

      // What a relay killed between publish and mark-sent leaves behind: the event in JetStream, the row unsent.
      const [row] = yield* Effect.promise(() => p.inspector<Array<{ envelope: string }>>`SELECT envelope::text AS envelope FROM sluice_outbox`)
      const client = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: nats.url })),
        (client) => Effect.promise(() => client.close())
      )
      const direct = yield* Effect.promise(() => client.publish(Either.getOrThrow(Envelope.decodeEnvelope(row!.envelope))))
      expect(direct).toMatchObject({ id, duplicate: false })

      yield* relay(p, nats.url)
      yield* allSent(p, 1)

      expect((yield* published).filter((message) => message.envelope.id === id)).toHaveLength(2)
      const stored = yield* storedWithIds(nats.url, [id])
      expect(stored.map((event) => event.seq)).toEqual([direct.seq])
    })
  )

  it.scoped("falls back to polling when no notification comes", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const p = yield* producer()
      yield* Effect.promise(() => p.db.execute(sql`ALTER TABLE sluice_outbox DISABLE TRIGGER sluice_outbox_notify`))
      yield* relay(p, nats.url, { pollInterval: "300 millis" })

      const id = yield* placeOrder(p, "order-6", 6)
      yield* allSent(p, 1)
      expect((yield* storedWithIds(nats.url, [id])).map((event) => event.msgId)).toEqual([id])
    })
  )

  it.scoped("several relays publish every row exactly once and each key in order", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const p = yield* producer()
      const published = yield* publishedMessages(nats.url)
      const keys = Array.from({ length: 8 }, (_, i) => `key-${i}`)
      /** One transaction: for each n, an event per key in key order, then one without a key. */
      const enqueueRange = (from: number, to: number) =>
        Effect.promise(() =>
          p.db.transaction(async (tx) => {
            const written: Array<string> = []
            for (let n = from; n < to; n++) {
              for (const key of keys) written.push(await p.outbox.enqueue(tx, { type: "stock.moved", key, data: { n } }))
              written.push(await p.outbox.enqueue(tx, { type: "stock.counted", data: { n } }))
            }
            return written
          })
        )

      // A backlog the relays start on together, so their batches interleave the same keys...
      const backlog = yield* enqueueRange(0, 30)
      for (let i = 0; i < 3; i++) yield* relay(p, nats.url, { batchSize: 7 })
      // ...and more committed while they run.
      const more = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => 30 + 3 * i),
        (n) => enqueueRange(n, n + 3)
      )
      const ids = [...backlog, ...more.flat()]
      expect(ids).toHaveLength(60 * 9)
      yield* allSent(p, ids.length)

      const ours = new Set(ids)
      const messages = (yield* published).filter((message) => ours.has(message.envelope.id))
      // No row was ever published twice, not even as a copy JetStream would have dropped.
      expect(messages).toHaveLength(ids.length)
      expect(new Set(messages.map((message) => message.msgId))).toEqual(ours)

      const stored = yield* storedWithIds(nats.url, ids)
      expect(stored).toHaveLength(ids.length)
      const inStream = sequencesByKey(stored.map((event) => event.envelope))
      const expected = Array.from({ length: 60 }, (_, n) => n)
      expect([...inStream.keys()].sort()).toEqual(keys)
      for (const key of keys) expect(inStream.get(key), key).toEqual(expected)
    }),
    { timeout: 120_000 }
  )

  it.scoped("deletes sent rows once the retention has passed", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const p = yield* producer()
      yield* relay(p, nats.url, { retention: "1 second" })
      const clock = p.inspector

      const id = yield* placeOrder(p, "order-7", 7)
      const { sentAt } = yield* waitForEffect(
        Effect.promise(() => clock<Array<{ sentAt: Date }>>`SELECT sent_at AS "sentAt" FROM sluice_outbox WHERE sent_at IS NOT NULL`).pipe(
          Effect.map((rows) => rows[0])
        ),
        { description: "the row sent" }
      )
      yield* waitForEffect(p.rows.pipe(Effect.map((rows) => rows.length === 0)), { description: "the sent row deleted" })

      const [{ now }] = yield* Effect.promise(() => clock<Array<{ now: Date }>>`SELECT now()`)
      expect(now.getTime() - sentAt.getTime()).toBeGreaterThanOrEqual(1000)
      expect((yield* storedWithIds(nats.url, [id])).map((event) => event.msgId)).toEqual([id])
    })
  )

  it.scoped("startOutboxRelay refuses a database without the outbox table and relays once it is migrated", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const url = yield* throwawayDatabase
      const refused = yield* Effect.promise(() =>
        startOutboxRelay({ databaseUrl: url, servers: nats.url }).then(
          (running) => running.stop().then(() => undefined),
          (error: unknown) => error
        )
      )
      assert(refused instanceof OutboxUnavailable)
      expect(refused.message).toContain("sluice_outbox does not exist")

      const db = yield* drivers["postgres.js"](url)
      const outbox = createOutbox(db)
      yield* Effect.promise(() => outbox.migrate())
      const running = yield* Effect.acquireRelease(
        Effect.promise(() => startOutboxRelay({ databaseUrl: url, servers: nats.url, pollInterval: "200 millis" })),
        (running) => Effect.promise(() => running.stop())
      )
      assert(running !== undefined)
      const id = yield* Effect.promise(() => db.transaction((tx) => outbox.enqueue(tx, { type: "user.signed_up", data: {} })))
      yield* waitForEffect(storedWithIds(nats.url, [id]).pipe(Effect.map((events) => events.length === 1)), {
        description: "the event in the stream"
      })
    })
  )
})

describe("outbox while NATS is down", () => {
  it.scopedLive("keeps rows pending and drains them in order once NATS is back", () =>
    Effect.gen(function* () {
      const nats = yield* tempNatsServer
      yield* withJsm(nats.url, (jsm) => ensureStreams(jsm))
      const p = yield* producer()
      yield* relay(p, nats.url, { ackTimeoutMs: 500, maxBackoff: "500 millis" })

      const first = yield* placeOrder(p, "order-8", 8)
      yield* allSent(p, 1)

      yield* nats.stop
      const ids = [first]
      for (let n = 0; n < 10; n++) {
        for (const key of ["stock-a", "stock-b"]) {
          ids.push(yield* Effect.promise(() => p.db.transaction((tx) => p.outbox.enqueue(tx, { type: "stock.moved", key, data: { n } }))))
        }
      }
      // The relay tried, failed, and left every row in place.
      const tried = yield* waitForEffect(
        p.rows.pipe(Effect.map((rows) => rows.some((row) => row.attempts > 0 && !row.sent) && rows)),
        { description: "a failed attempt recorded" }
      )
      expect(tried.filter((row) => !row.sent)).toHaveLength(20)
      expect(tried.find((row) => row.attempts > 0 && !row.sent)?.lastError).toMatch(/acknowledgement/)

      yield* nats.restart
      yield* allSent(p, 21)

      const stored = yield* storedWithIds(nats.url, ids)
      expect(stored.map((event) => event.envelope.id).sort()).toEqual([...ids].sort())
      const expected = Array.from({ length: 10 }, (_, n) => n)
      const inStream = sequencesByKey(stored.map((event) => event.envelope))
      expect(inStream.get("stock-a")).toEqual(expected)
      expect(inStream.get("stock-b")).toEqual(expected)
    }),
    { timeout: 120_000 }
  )
})
