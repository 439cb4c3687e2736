/**
 * The outbox relay crashed between publishing rows and marking them sent: `sluice outbox-relay`
 * runs as a real process over a backlog in one large batch and gets a SIGKILL as soon as its
 * first event reaches NATS, before the transaction that marks the batch sent can commit. A new
 * relay process publishes the unsent rows again; JetStream drops the copies it already holds
 * (`Nats-Msg-Id` = row id), so every row ends sent, every event is stored once, in its key's
 * order, and reaches the destination exactly once.
 */
import { expect, layer } from "@effect/vitest"
import { connect } from "@nats-io/transport-node"
import { Subjects } from "@sluice/protocol"
import { createOutbox } from "@sluice/sdk"
import { drizzle } from "drizzle-orm/postgres-js"
import { Deferred, Effect, Exit } from "effect"
import postgres from "postgres"
import { brokerOnFixture } from "../helpers/broker.js"
import { runSluice, startSluiceProcess } from "../helpers/brokerProcess.js"
import { withJsm } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

/** Rows per attempt at a crash: one batch, so that nothing is marked sent before all are published. */
const ROWS = 600
/** Each key's rows are published one after another, which keeps the batch in flight long enough to kill. */
const KEYS = 12
/** Crashes tried until one leaves rows unsent (the relay may have committed its batch before the kill landed). */
const MAX_CRASHES = 3

interface Posted {
  readonly attempt: number
  readonly i: number
}

/** A producer database with the outbox migrated, and what the test reads of it. */
const producerDatabase = Effect.gen(function* () {
  const url = yield* throwawayDatabase
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => postgres(url, { max: 2, onnotice: () => {} })),
    (client) => Effect.promise(() => client.end({ timeout: 5 }))
  )
  const db = drizzle({ client })
  const outbox = createOutbox(db)
  yield* Effect.promise(() => outbox.migrate())
  return {
    url,
    /** Commits `ROWS` events over `KEYS` keys in one transaction; resolves with their ids. */
    enqueue: (attempt: number) =>
      Effect.promise(() =>
        db.transaction(async (tx) => {
          const ids: Array<string> = []
          for (let i = 0; i < ROWS; i++) {
            const data: Posted = { attempt, i }
            ids.push(await outbox.enqueue(tx, { type: "ledger.posted", key: `account-${i % KEYS}`, data }))
          }
          return ids
        })
      ),
    unsent: Effect.promise(() => client<Array<{ n: number }>>`SELECT count(*)::int AS n FROM sluice_outbox WHERE sent_at IS NULL`).pipe(
      Effect.map((rows) => rows[0]!.n)
    ),
    total: Effect.promise(() => client<Array<{ n: number }>>`SELECT count(*)::int AS n FROM sluice_outbox`).pipe(
      Effect.map((rows) => rows[0]!.n)
    )
  }
})

/**
 * Every message published on the event subjects, seen by a plain NATS subscriber: unlike the
 * stream, it also sees the copies JetStream drops as duplicates. `arm` gives an effect that
 * completes at the next message after it.
 */
const watchPublished = (natsUrl: string) =>
  Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      Effect.promise(() => connect({ servers: natsUrl })),
      (nc) => Effect.promise(() => nc.close())
    )
    const msgIds: Array<string> = []
    let next: Deferred.Deferred<void> | undefined
    nc.subscribe(Subjects.EVENTS_WILDCARD, {
      callback: (_error, msg) => {
        msgIds.push(msg.headers?.get(Subjects.Headers.msgId) ?? "")
        if (next !== undefined) Deferred.unsafeDone(next, Exit.void)
      }
    })
    yield* Effect.promise(() => nc.flush())
    return {
      arm: Effect.gen(function* () {
        const deferred = yield* Deferred.make<void>()
        next = deferred
        return Deferred.await(deferred)
      }),
      /** Copies per `Nats-Msg-Id` so far, after a round trip so that nothing routed to us earlier is still on the way. */
      copies: Effect.promise(() => nc.flush()).pipe(
        Effect.map(() => {
          const counts = new Map<string, number>()
          for (const id of msgIds) counts.set(id, (counts.get(id) ?? 0) + 1)
          return counts
        })
      )
    }
  })

layer(NatsFixture.layer, { excludeTestServices: true })("outbox relay killed mid-batch", (it) => {
  it.scoped(
    "a relay killed between publishing and marking sent leaves its rows for the next one; each event is stored and delivered once",
    () =>
      Effect.gen(function* () {
        const { client, natsUrl } = yield* brokerOnFixture
        const receiver = yield* scopedReceiver()
        yield* client.destinations.create({ payload: { id: "ledger", url: `${receiver.url}/ledger`, subscriptions: ["ledger.*"] } })
        const producer = yield* producerDatabase
        const published = yield* watchPublished(natsUrl)
        const relayArgs = ["outbox-relay", "--database-url", producer.url, "--nats-url", natsUrl, "--batch-size", String(ROWS * MAX_CRASHES)]

        const ids: Array<string> = []
        const unsentAfterCrash: Array<number> = []
        for (let attempt = 1; attempt <= MAX_CRASHES && !unsentAfterCrash.some((n) => n > 0); attempt++) {
          ids.push(...(yield* producer.enqueue(attempt)))
          const firstPublished = yield* published.arm
          const relay = yield* startSluiceProcess(relayArgs)
          yield* firstPublished.pipe(
            Effect.timeoutFail({
              duration: "60 seconds",
              onTimeout: () => new Error(`the relay published nothing within 60 s\n${relay.stdout()}\n${relay.stderr()}`)
            })
          )
          const exit = yield* relay.kill
          expect(exit).toEqual({ code: null, signal: "SIGKILL" })
          expect(relay.stdout()).toContain(`relaying the outbox to NATS at ${natsUrl}`)
          unsentAfterCrash.push(yield* producer.unsent)
        }
        // At least one crash hit the window between the first publish and the commit.
        expect(unsentAfterCrash.some((n) => n > 0), `rows unsent after each crash: ${unsentAfterCrash.join(", ")}`).toBe(true)

        const relay = yield* startSluiceProcess(relayArgs)
        yield* waitForEffect(producer.unsent.pipe(Effect.map((n) => n === 0)), {
          description: () => `every outbox row marked sent\n${relay.stderr()}`,
          timeoutMs: 60_000,
          intervalMs: 100
        })
        expect(yield* producer.total).toBe(ids.length)

        // Published at least once, some of them twice (by the relay that crashed and the one after it)...
        const copies = yield* published.copies
        expect(ids.filter((id) => (copies.get(id) ?? 0) < 1)).toEqual([])
        expect([...copies.values()].some((n) => n >= 2)).toBe(true)
        expect([...copies.keys()].filter((id) => !new Set(ids).has(id))).toEqual([])
        // ...and stored once: the file's stream holds nothing else.
        const stream = yield* withJsm(natsUrl, (jsm) => jsm.streams.info(Subjects.EVENTS_STREAM))
        expect(stream.state.messages).toBe(ids.length)

        // Every event in the history once and delivered, to the receiver exactly once.
        const history = yield* waitForEffect(
          Effect.gen(function* () {
            const events: Array<{ readonly id: string; readonly duplicateOf: string | null; readonly states: ReadonlyArray<string> }> = []
            let cursor: string | undefined
            do {
              const page = yield* client.events.list({ urlParams: { type: "ledger.posted", limit: 500, cursor } })
              for (const e of page.items) events.push({ id: e.id, duplicateOf: e.duplicateOf, states: e.deliveries.map((d) => d.state) })
              cursor = page.nextCursor ?? undefined
            } while (cursor !== undefined)
            return events.length >= ids.length && events.every((e) => e.states.includes("completed")) && events
          }),
          { description: `${ids.length} events in the history, each delivered`, timeoutMs: 60_000, intervalMs: 250 }
        )
        expect(history).toHaveLength(ids.length)
        expect(new Set(history.map((e) => e.id))).toEqual(new Set(ids))
        expect(history.filter((e) => e.duplicateOf !== null || e.states.length !== 1)).toEqual([])

        const received = receiver.received()
        expect(received).toHaveLength(ids.length)
        expect(new Set(received.map((r) => r.headers["webhook-id"]))).toEqual(new Set(ids))
        // Each key's events arrived in the order they were enqueued, across the crash.
        const byKey = new Map<string, Array<Posted>>()
        for (const r of received) {
          const event = r.json as { readonly key: string; readonly data: Posted }
          byKey.set(event.key, [...(byKey.get(event.key) ?? []), event.data])
        }
        expect(byKey.size).toBe(KEYS)
        for (const [key, posted] of byKey) {
          const order = posted.map((p) => p.attempt * ROWS + p.i)
          expect(order, key).toEqual([...order].sort((a, b) => a - b))
        }
      }),
    240_000
  )

  it.effect("a batch size the relay cannot use stops it at once, naming the option", () =>
    Effect.gen(function* () {
      const run = yield* runSluice(["outbox-relay", "--database-url", "postgres://postgres@127.0.0.1:5432/postgres", "--batch-size", "0"])
      expect(run.code).not.toBe(0)
      expect(run.stdout + run.stderr).toContain("--batch-size must be a whole number from 1 to 10000")
    }),
    60_000
  )
})
